using System.Net;
using Microsoft.EntityFrameworkCore;
using Tally.Features.Ledger;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Ledger;

public class LedgerTests
{
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Transfers_RunConcurrently_KeepTotalsAndNoNegativeBalance(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var accounts = new List<Guid>();
        for (var i = 0; i < 8; i++)
        {
            var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());
            await admin.DepositAsync(account, 10.00m);
            accounts.Add(account);
        }

        // 400 transfers of 0.01..5.00 between random pairs on 16 concurrent connections: many would overdraw.
        var outcomes = new System.Collections.Concurrent.ConcurrentBag<TransferResult>();
        var random = new Random(42);
        var plan = Enumerable.Range(0, 400).Select(i =>
        {
            var from = accounts[random.Next(accounts.Count)];
            var to = accounts[random.Next(accounts.Count)];
            return (from, to: from == to ? accounts[(accounts.IndexOf(from) + 1) % accounts.Count] : to, amount: random.Next(1, 501), key: $"t{i}");
        }).ToList();
        await Parallel.ForEachAsync(plan, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (t, ct) =>
        {
            for (var attempt = 0; ; attempt++)
            {
                await using var db = app.Db();
                try
                {
                    await using var tx = await db.Database.BeginTransactionAsync(ct);
                    var result = await Tally.Features.Ledger.Ledger.TransferAsync(db, new TransferRequest(t.from, t.to, t.amount, "USD", "TEST", t.key), DateTime.UtcNow, ct);
                    if (result is TransferResult.Transferred)
                    {
                        await tx.CommitAsync(ct);
                    }
                    outcomes.Add(result);
                    return;
                }
                catch (Exception e) when (Tally.Data.DbErrors.IsTransient(e) && attempt < 10)
                {
                    // A PostgreSQL deadlock victim or serialization failure is retried, as a worker would.
                }
            }
        });

        await using var check = app.Db();
        var balances = await check.LedgerAccounts.AsNoTracking().ToListAsync(TestContext.Current.CancellationToken);
        Assert.Equal(0, balances.Sum(a => a.BalanceMinor));
        Assert.All(balances.Where(a => a.Kind == AccountKinds.User), a => Assert.True(a.BalanceMinor >= 0));
        Assert.Equal(8 * 10_00, balances.Where(a => a.Kind == AccountKinds.User).Sum(a => a.BalanceMinor));
        Assert.Contains(outcomes, o => o is TransferResult.InsufficientFunds);
        Assert.Contains(outcomes, o => o is TransferResult.Transferred);

        // Every balance is exactly what its transfers say.
        var transfers = await check.LedgerTransfers.AsNoTracking().ToListAsync(TestContext.Current.CancellationToken);
        foreach (var account in balances)
        {
            var expected = transfers.Where(t => t.CreditAccountId == account.Id).Sum(t => t.AmountMinor)
                - transfers.Where(t => t.DebitAccountId == account.Id).Sum(t => t.AmountMinor);
            Assert.Equal(expected, account.BalanceMinor);
        }
        Assert.Equal(outcomes.Count(o => o is TransferResult.Transferred) + 8, transfers.Count);
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Deposit_SameIdempotencyKeyTwice_MovesMoneyOnce(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());

        var first = await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = 12.34m, idempotencyKey = "k-1" })
            .ExpectAsync(HttpStatusCode.Created);
        var again = await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = 12.34m, idempotencyKey = "k-1" })
            .ExpectAsync(HttpStatusCode.OK);
        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = 99m, idempotencyKey = "k-1" })
            .ExpectProblemAsync(HttpStatusCode.Conflict, "LEDGER.IDEMPOTENCY_KEY_REUSED");

        Assert.Equal(first.GetProperty("id").GetGuid(), again.GetProperty("id").GetGuid());
        Assert.Equal(12.34m, await admin.BalanceAsync(account));
        var totals = await admin.GetAsync("/api/admin/ledger/totals").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0m, totals[0].GetProperty("total").GetDecimal());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Database_RefusesNegativeUserBalanceAndChangedTransfers(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        await admin.DepositAsync(account, 1m);
        await using var db = app.Db();
        var ct = TestContext.Current.CancellationToken;

        var negative = await Assert.ThrowsAnyAsync<Exception>(() =>
            db.Database.ExecuteSqlAsync($"UPDATE ledger_accounts SET balance_minor = -1 WHERE id = {account}", ct));
        Assert.True(Tally.Data.DbErrors.IsCheckViolation(negative), negative.ToString());

        await Assert.ThrowsAnyAsync<Exception>(() => db.Database.ExecuteSqlAsync($"UPDATE ledger_transfers SET amount_minor = 1", ct));
        await Assert.ThrowsAnyAsync<Exception>(() => db.Database.ExecuteSqlAsync($"DELETE FROM ledger_transfers", ct));
        Assert.Equal(1m, await admin.BalanceAsync(account));
    }

    [Fact]
    public async Task MyLedger_ShowsOnlyTheCallersAccountsAndTransfers()
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var alice = await admin.CreateUserAsync();
        var bob = await admin.CreateUserAsync();
        var aliceAccount = await admin.CreateAccountAsync(alice);
        var bobAccount = await admin.CreateAccountAsync(bob, "EUR");
        await admin.DepositAsync(aliceAccount, 5m);
        await admin.DepositAsync(bobAccount, 7m);

        var mine = await app.AsUser(alice).GetAsync("/api/me/ledger/accounts").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(1, mine.GetArrayLength());
        Assert.Equal(aliceAccount, mine[0].GetProperty("id").GetGuid());
        Assert.Equal(5m, mine[0].GetProperty("balance").GetDecimal());

        var transfers = await app.AsUser(alice).GetAsync("/api/me/ledger/transfers").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(1, transfers.GetArrayLength());
        Assert.Equal(aliceAccount, transfers[0].GetProperty("creditAccountId").GetGuid());
    }

    [Theory]
    [InlineData(1.5, "USD", 150L)]
    [InlineData(0.01, "USD", 1L)]
    [InlineData(7, "JPY", 7L)]
    [InlineData(1.234, "KWD", 1234L)]
    public void Currencies_ToMinor_IsExact(double amount, string currency, long minor) =>
        Assert.Equal(minor, Currencies.ToMinor((decimal)amount, currency));

    [Theory]
    [InlineData("0.001", "USD")]
    [InlineData("0.5", "JPY")]
    [InlineData("1.2345", "KWD")]
    public void Currencies_ToMinor_RefusesTooManyDecimals(string amount, string currency) =>
        Assert.Null(Currencies.ToMinor(decimal.Parse(amount, System.Globalization.CultureInfo.InvariantCulture), currency));
}
