using Npgsql;

namespace Tally.Tests.Harness;

/// <summary>
/// Loads many funded guardian/junior pairs with a daily allowance each straight into PostgreSQL
/// (set-based SQL: seconds for 100,000 pairs). Every guardian is funded through a real deposit
/// transfer from the funding account, so the ledger's invariants hold from the start.
/// </summary>
public static class AllowanceLoad
{
    public sealed record Loaded(int Pairs, int DuePerSchedule, long AmountMinor, long FundsMinor, DateTime Start);

    /// <summary>Each schedule started <paramref name="duePerSchedule"/> days ago (plus an hour), so that many occurrences are due.</summary>
    public static async Task<Loaded> SeedPostgresAsync(string connectionString, int pairs, int duePerSchedule, long amountMinor = 500, long? fundsMinor = null)
    {
        var now = DateTime.UtcNow;
        var start = new DateTime(now.Ticks - (now.Ticks % TimeSpan.TicksPerSecond), DateTimeKind.Utc).AddDays(-duePerSchedule).AddHours(1);
        var funds = fundsMinor ?? amountMinor * duePerSchedule * 2;
        var funding = Tally.Features.Ledger.Ledger.FundingAccountId("USD");
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var sql = """
            INSERT INTO users (id, username, context, is_active, created_at)
            SELECT md5('g' || i)::uuid, 'load-g-' || i, 'MOBILE_BANKING', true, now() FROM generate_series(1, @pairs) i
            UNION ALL
            SELECT md5('j' || i)::uuid, 'load-j-' || i, 'WALLET', true, now() FROM generate_series(1, @pairs) i;

            INSERT INTO guardian_juniors (guardian_id, junior_id, linked_at)
            SELECT md5('g' || i)::uuid, md5('j' || i)::uuid, now() FROM generate_series(1, @pairs) i;

            INSERT INTO ledger_accounts (id, owner_id, currency, kind, balance_minor, created_at)
            VALUES (@funding, NULL, 'USD', 'FUNDING', 0, now()) ON CONFLICT DO NOTHING;
            INSERT INTO ledger_accounts (id, owner_id, currency, kind, balance_minor, created_at)
            SELECT md5('ga' || i)::uuid, md5('g' || i)::uuid, 'USD', 'USER', @funds, now() FROM generate_series(1, @pairs) i
            UNION ALL
            SELECT md5('ja' || i)::uuid, md5('j' || i)::uuid, 'USD', 'USER', 0, now() FROM generate_series(1, @pairs) i;
            UPDATE ledger_accounts SET balance_minor = balance_minor - @funds * @pairs WHERE id = @funding;
            INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at)
            SELECT md5('dep' || i)::uuid, @funding, md5('ga' || i)::uuid, @funds, 'USD', 'DEPOSIT', 'deposit:load-' || i, now()
            FROM generate_series(1, @pairs) i;

            INSERT INTO allowance_schedules (id, guardian_id, junior_id, amount_minor, currency, frequency, interval, time_zone,
                start_at, status, next_run_at, active_from, created_at, updated_at)
            SELECT md5('s' || i)::uuid, md5('g' || i)::uuid, md5('j' || i)::uuid, @amount, 'USD', 'DAILY', 1, 'UTC',
                @start, 'ON', @start, @start, now(), now()
            FROM generate_series(1, @pairs) i;
            """;
        await using (var command = new NpgsqlCommand(sql, connection, tx))
        {
            command.CommandTimeout = 600;
            command.Parameters.AddWithValue("pairs", pairs);
            command.Parameters.AddWithValue("funds", funds);
            command.Parameters.AddWithValue("amount", amountMinor);
            command.Parameters.AddWithValue("funding", funding);
            command.Parameters.AddWithValue("start", start);
            await command.ExecuteNonQueryAsync();
        }
        await tx.CommitAsync();
        await using (var analyze = new NpgsqlCommand("ANALYZE", connection))
        {
            await analyze.ExecuteNonQueryAsync();
        }
        return new Loaded(pairs, duePerSchedule, amountMinor, funds, start);
    }

    public static async Task<long> PaidCountAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM allowance_credits WHERE outcome = 'PAID'", connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync());
    }
}
