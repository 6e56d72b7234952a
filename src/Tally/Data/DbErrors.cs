using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Tally.Data;

/// <summary>The one place that knows how each database reports a constraint violation or a failure.</summary>
public static class DbErrors
{
    private const int SqliteConstraint = 19;
    private const int SqliteConstraintUnique = 2067;
    private const int SqliteConstraintPrimaryKey = 1555;
    private const int SqliteConstraintCheck = 275;
    private const int SqliteConstraintForeignKey = 787;

    public static bool IsUniqueViolation(Exception exception) => Find(exception) switch
    {
        PostgresException pg => pg.SqlState == PostgresErrorCodes.UniqueViolation,
        SqliteException lite => lite.SqliteErrorCode == SqliteConstraint
            && lite.SqliteExtendedErrorCode is SqliteConstraintUnique or SqliteConstraintPrimaryKey,
        _ => false,
    };

    public static bool IsForeignKeyViolation(Exception exception) => Find(exception) switch
    {
        PostgresException pg => pg.SqlState == PostgresErrorCodes.ForeignKeyViolation,
        SqliteException lite => lite.SqliteErrorCode == SqliteConstraint && lite.SqliteExtendedErrorCode == SqliteConstraintForeignKey,
        _ => false,
    };

    public static bool IsCheckViolation(Exception exception) => Find(exception) switch
    {
        PostgresException pg => pg.SqlState == PostgresErrorCodes.CheckViolation,
        SqliteException lite => lite.SqliteErrorCode == SqliteConstraint
            && lite.SqliteExtendedErrorCode == SqliteConstraintCheck,
        _ => false,
    };

    /// <summary>
    /// A fault worth retrying later: the database went away, a serialization failure or deadlock,
    /// or SQLite still busy after its timeout.
    /// </summary>
    public static bool IsTransient(Exception exception) => Find(exception) switch
    {
        PostgresException pg => pg.IsTransient
            || pg.SqlState is PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected,
        NpgsqlException npg => npg.IsTransient,
        SqliteException lite => lite.SqliteErrorCode is 5 or 6, // SQLITE_BUSY, SQLITE_LOCKED
        _ => exception is TimeoutException || exception.InnerException is TimeoutException,
    };

    /// <summary>
    /// The database refused or lost a statement or a transaction: a constraint or a trigger, a
    /// serialization failure or deadlock, a dropped connection, a timeout. Any other exception is a
    /// bug in Tally, not a database failure.
    /// </summary>
    public static bool IsDatabaseFailure(Exception exception) =>
        exception is DbUpdateException || Find(exception) is DbException || IsTransient(exception);

    private static Exception? Find(Exception exception)
    {
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            if (e is PostgresException or NpgsqlException or SqliteException)
            {
                return e;
            }
        }
        return exception is DbUpdateException ? null : exception;
    }
}
