using Npgsql;

namespace Tally.Jobs.RateLimits;

/// <summary>
/// The fleet's counts in PostgreSQL, for a fleet without Redis: one call of <c>fleet_take</c>
/// (migration 0017) decides a start under a row lock per upstream, on the database server's clock.
/// </summary>
public sealed class PostgresFleetStore(NpgsqlDataSource dataSource) : IFleetStore
{
    public string Name => "postgres";

    public async Task<FleetAnswer> TryTakeAsync(FleetLimit limit, bool priority, string id, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("SELECT fleet_take($1, $2, $3, $4, $5, $6, $7, $8, $9)");
        command.Parameters.Add(new NpgsqlParameter { Value = limit.Upstream });
        command.Parameters.Add(new NpgsqlParameter { Value = priority });
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        command.Parameters.Add(new NpgsqlParameter { Value = limit.Permits });
        command.Parameters.Add(new NpgsqlParameter { Value = limit.Reserve });
        command.Parameters.Add(new NpgsqlParameter { Value = limit.MaxCalls });
        command.Parameters.Add(new NpgsqlParameter { Value = (int)Math.Ceiling(limit.Window.TotalMilliseconds) });
        command.Parameters.Add(new NpgsqlParameter { Value = (int)limit.Spacing.TotalMilliseconds });
        command.Parameters.Add(new NpgsqlParameter { Value = (int)Math.Ceiling(limit.CallTimeout.TotalMilliseconds) });
        var wait = Convert.ToInt32(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
        return wait == 0 ? FleetAnswer.Grant : new FleetAnswer(false, TimeSpan.FromMilliseconds(wait));
    }

    public async Task ReleaseAsync(FleetLimit limit, string id)
    {
        await using var command = dataSource.CreateCommand("UPDATE fleet_calls SET in_flight_until = NULL WHERE upstream = $1 AND id = $2");
        command.Parameters.Add(new NpgsqlParameter { Value = limit.Upstream });
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        await command.ExecuteNonQueryAsync();
    }

    public async Task PauseAsync(string upstream, TimeSpan pause, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("SELECT fleet_pause($1, $2)");
        command.Parameters.Add(new NpgsqlParameter { Value = upstream });
        command.Parameters.Add(new NpgsqlParameter { Value = (int)Math.Ceiling(pause.TotalMilliseconds) });
        await command.ExecuteNonQueryAsync(ct);
    }
}
