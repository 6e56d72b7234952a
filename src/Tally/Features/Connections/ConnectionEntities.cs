using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Tally.Data;

namespace Tally.Data
{
    public sealed partial class TallyDb
    {
        public DbSet<Features.Connections.ProviderConnection> ProviderConnections => Set<Features.Connections.ProviderConnection>();
        public DbSet<Features.Connections.ProviderAccount> ProviderAccounts => Set<Features.Connections.ProviderAccount>();
        public DbSet<Features.Connections.ConnectionSyncRun> ConnectionSyncRuns => Set<Features.Connections.ConnectionSyncRun>();
    }
}

namespace Tally.Features.Connections
{
    public static class ConnectionStatus
    {
        public const string Active = "ACTIVE";

        /// <summary>The provider refused our credentials; the user must supply new ones (<c>PUT .../credentials</c>).</summary>
        public const string ReauthRequired = "REAUTH_REQUIRED";

        /// <summary>Deleted by its owner: credentials wiped, kept only for the history.</summary>
        public const string Disconnected = "DISCONNECTED";
    }

    public static class SyncRunStatus
    {
        public const string Running = "RUNNING";
        public const string Succeeded = "SUCCEEDED";
        public const string Failed = "FAILED";
    }

    public static class SyncTriggers
    {
        public const string Api = "api";
        public const string Schedule = "schedule";
    }

    /// <summary>A user's connection to an aggregator. Its credentials are stored only as Data Protection ciphertext.</summary>
    public sealed class ProviderConnection
    {
        public Guid Id { get; set; }
        public Guid UserId { get; set; }
        public required string ProviderSlug { get; set; }
        public string? Name { get; set; }
        public required string Status { get; set; }
        public string? CredentialsEncrypted { get; set; }
        public DateTime? ConsentExpiresAt { get; set; }
        public DateTime? LastSyncAt { get; set; }
        public DateTime? LastAttemptAt { get; set; }
        public string? LastError { get; set; }
        public DateTime? RetryNotBefore { get; set; }
        public DateTime? SyncClaimedUntil { get; set; }

        /// <summary>The instance (<c>Tally:InstanceId</c>) that took the claim.</summary>
        public string? SyncClaimedBy { get; set; }
        public DateTime CreatedAt { get; set; }
        public DateTime UpdatedAt { get; set; }
        public DateTime? DeletedAt { get; set; }
    }

    /// <summary>One account as the provider last reported it.</summary>
    public sealed class ProviderAccount
    {
        public Guid Id { get; set; }
        public Guid ConnectionId { get; set; }
        public required string ProviderAccountId { get; set; }
        public string? MaskedNumber { get; set; }
        public required string Name { get; set; }
        public required string AccountType { get; set; }
        public decimal Balance { get; set; }
        public decimal? AvailableBalance { get; set; }
        public required string Currency { get; set; }
        public bool IsActive { get; set; }
        public DateTime? BalanceDate { get; set; }
        public DateTime LastSyncedAt { get; set; }
        public string? ProviderMetadata { get; set; }
        public DateTime CreatedAt { get; set; }
        public DateTime UpdatedAt { get; set; }
    }

    /// <summary>One sync of one connection, whatever became of it: the connection's history.</summary>
    public sealed class ConnectionSyncRun
    {
        public Guid Id { get; set; }
        public Guid ConnectionId { get; set; }
        public required string Trigger { get; set; }
        public bool Forced { get; set; }
        public required string Status { get; set; }
        public string? Reason { get; set; }
        public bool ProviderCalled { get; set; }
        public int CreatedCount { get; set; }
        public int UpdatedCount { get; set; }
        public int UnchangedCount { get; set; }
        public int ErrorCount { get; set; }
        public string? Message { get; set; }
        public DateTime StartedAt { get; set; }
        public DateTime? FinishedAt { get; set; }
    }

    internal sealed class ProviderConnectionMap : IEntityTypeConfiguration<ProviderConnection>
    {
        public void Configure(EntityTypeBuilder<ProviderConnection> e)
        {
            e.ToTable("provider_connections");
            e.HasOne<Users.User>().WithMany().HasForeignKey(c => c.UserId).OnDelete(DeleteBehavior.Restrict);
        }
    }

    internal sealed class ProviderAccountMap : IEntityTypeConfiguration<ProviderAccount>
    {
        public void Configure(EntityTypeBuilder<ProviderAccount> e)
        {
            e.ToTable("provider_accounts");
            e.Property(a => a.Balance).HasPrecision(19, 4);
            e.Property(a => a.AvailableBalance).HasPrecision(19, 4);
            e.HasOne<ProviderConnection>().WithMany().HasForeignKey(a => a.ConnectionId);
        }
    }

    internal sealed class ConnectionSyncRunMap : IEntityTypeConfiguration<ConnectionSyncRun>
    {
        public void Configure(EntityTypeBuilder<ConnectionSyncRun> e)
        {
            e.ToTable("connection_sync_runs");
            e.HasOne<ProviderConnection>().WithMany().HasForeignKey(r => r.ConnectionId);
        }
    }

    public static class ConnectionQueries
    {
        /// <summary>The caller's live connection with this id: a foreign or deleted one is simply not there.</summary>
        public static IQueryable<ProviderConnection> OwnedBy(this IQueryable<ProviderConnection> connections, Guid userId) =>
            connections.Where(c => c.UserId == userId && c.DeletedAt == null);

        /// <summary>
        /// Holds the user's row until the caller's transaction ends, so decisions about the user's
        /// connections (how many) are taken one at a time (<see cref="ConnectionSql.LockUser"/>).
        /// </summary>
        public static async Task LockUserAsync(this TallyDb db, Guid userId, CancellationToken ct)
        {
            if (ConnectionSql.For(db.Database).LockUser is { } lockUser)
            {
                await db.Database.SqlQueryRaw<Guid>(lockUser, userId).ToListAsync(ct);
            }
        }

        public static IQueryable<ConnectionSyncRun> ProviderCallsSince(this IQueryable<ConnectionSyncRun> runs, DateTime since) =>
            runs.Where(r => r.ProviderCalled && r.StartedAt > since);
    }
}
