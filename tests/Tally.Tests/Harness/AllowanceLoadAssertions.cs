using Npgsql;

namespace Tally.Tests.Harness;

public static class AllowanceLoadAssertions
{
    /// <summary>Checks every invariant after a run: each occurrence paid exactly once, balances exact, totals unchanged.</summary>
    public static async Task AssertAllPaidExactlyOnceAsync(string connectionString, AllowanceLoad.Loaded load)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        async Task<long> ScalarAsync(string sql)
        {
            await using var command = new NpgsqlCommand(sql, connection);
            command.CommandTimeout = 300;
            return Convert.ToInt64(await command.ExecuteScalarAsync());
        }
        var expected = (long)load.Pairs * load.DuePerSchedule;
        Assert.Equal(expected, await ScalarAsync("SELECT count(*) FROM allowance_credits WHERE outcome = 'PAID'"));
        Assert.Equal(0, await ScalarAsync("SELECT count(*) FROM allowance_credits WHERE outcome <> 'PAID'"));
        Assert.Equal(expected, await ScalarAsync("SELECT count(*) FROM ledger_transfers WHERE kind = 'ALLOWANCE'"));
        // Each schedule: exactly its due occurrences, at the right instants.
        Assert.Equal(0, await ScalarAsync($"""
            SELECT count(*) FROM allowance_schedules s
            WHERE (SELECT count(*) FROM allowance_credits c WHERE c.schedule_id = s.id) <> {load.DuePerSchedule}
               OR EXISTS (SELECT 1 FROM allowance_credits c WHERE c.schedule_id = s.id
                          AND (extract(epoch FROM c.run_at - s.start_at)::bigint % 86400 <> 0 OR c.run_at > now()))
            """));
        // No junior got more or less; no guardian paid more or less.
        Assert.Equal(0, await ScalarAsync($"""
            SELECT count(*) FROM ledger_accounts a JOIN users u ON u.id = a.owner_id
            WHERE (u.context = 'WALLET' AND a.balance_minor <> {load.AmountMinor * load.DuePerSchedule})
               OR (u.context = 'MOBILE_BANKING' AND a.balance_minor <> {load.FundsMinor - (load.AmountMinor * load.DuePerSchedule)})
            """));
        Assert.Equal(0, await ScalarAsync("SELECT coalesce(sum(balance_minor), 0) FROM ledger_accounts"));
        // Every balance equals the sum of its transfers.
        Assert.Equal(0, await ScalarAsync("""
            SELECT count(*) FROM ledger_accounts a
            WHERE a.balance_minor <> coalesce((SELECT sum(amount_minor) FROM ledger_transfers WHERE credit_account_id = a.id), 0)
                                  - coalesce((SELECT sum(amount_minor) FROM ledger_transfers WHERE debit_account_id = a.id), 0)
            """));
    }

}
