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
    public async Task Deposit_Location_AnswersTheTransferToAdminsOnly(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var owner = await admin.CreateUserAsync();
        var account = await admin.CreateAccountAsync(owner);

        using var created = await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = 12.34m, idempotencyKey = "k-location" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var deposit = await created.ReadJsonAsync();
        var location = created.Headers.Location ?? throw new InvalidOperationException("the 201 has no Location");

        var read = await admin.GetAsync(location).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(deposit.GetRawText(), read.GetRawText());
        Assert.Equal((account, 12.34m, "USD", LedgerEndpoints.DepositKind),
            (read.GetProperty("creditAccountId").GetGuid(), read.GetProperty("amount").GetDecimal(), read.GetProperty("currency").GetString(), read.GetProperty("kind").GetString()));

        // The same authorization as the deposit: not even the credited account's owner reads it here.
        await app.AsUser(owner).GetAsync(location).ExpectProblemAsync(HttpStatusCode.Forbidden, "FORBIDDEN");
        await app.CreateClient().GetAsync(location).ExpectProblemAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED");
        await admin.GetAsync($"/api/admin/ledger/transfers/{Guid.NewGuid()}").ExpectProblemAsync(HttpStatusCode.NotFound, "LEDGER.TRANSFER_NOT_FOUND");
        // A malformed id matches no route, as on every other {id} route of the API.
        await admin.GetAsync("/api/admin/ledger/transfers/not-a-uuid").ExpectProblemAsync(HttpStatusCode.NotFound, "NOT_FOUND");
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

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task TransferAll_MovesAllOrNothing(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var ct = TestContext.Current.CancellationToken;
        var payer = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        var other = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        var payees = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            payees.Add(await admin.CreateAccountAsync(await admin.CreateUserAsync()));
        }
        await admin.DepositAsync(payer, 10m);
        await admin.DepositAsync(other, 1m);

        async Task<IReadOnlyList<Guid>?> MoveAsync(params TransferRequest[] requests)
        {
            await using var db = app.Db();
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            var moved = (await Tally.Features.Ledger.Ledger.TransferAllAsync(db, requests, DateTime.UtcNow, ct)).TransferIds;
            if (moved is not null)
            {
                await tx.CommitAsync(ct);
            }
            return moved;
        }
        TransferRequest Pay(Guid from, Guid to, long minor, string key, string currency = "USD") => new(from, to, minor, currency, "TEST", key);

        // Each debit alone is covered (4.00 of 10.00), their sum (12.00) is not: nothing moves.
        Assert.Null(await MoveAsync(Pay(payer, payees[0], 400, "a"), Pay(payer, payees[1], 400, "b"), Pay(payer, payees[2], 400, "c")));
        // A missing account, another currency, or a key used within the set: nothing moves.
        Assert.Null(await MoveAsync(Pay(payer, payees[0], 100, "d"), Pay(payer, Guid.NewGuid(), 100, "e")));
        Assert.Null(await MoveAsync(Pay(payer, payees[0], 100, "f"), Pay(payer, payees[1], 100, "g", "EUR")));
        Assert.Null(await MoveAsync(Pay(payer, payees[0], 100, "h"), Pay(payer, payees[1], 100, "h")));
        Assert.Equal(10m, await admin.BalanceAsync(payer));
        foreach (var payee in payees)
        {
            Assert.Equal(0m, await admin.BalanceAsync(payee));
        }

        // Covered: 3 x 3.00 from the payer, and the other's 1.00 arriving at the payer in the same set.
        var moved = await MoveAsync(Pay(payer, payees[0], 300, "i"), Pay(other, payer, 100, "j"), Pay(payer, payees[1], 300, "k"), Pay(payer, payees[2], 300, "l"));
        Assert.NotNull(moved);
        Assert.Equal(4, moved.Distinct().Count());
        Assert.Equal(2m, await admin.BalanceAsync(payer));
        Assert.Equal(0m, await admin.BalanceAsync(other));
        foreach (var payee in payees)
        {
            Assert.Equal(3m, await admin.BalanceAsync(payee));
        }

        // A key used by an earlier set: nothing moves again.
        Assert.Null(await MoveAsync(Pay(payer, payees[0], 100, "m"), Pay(payer, payees[1], 100, "i")));
        Assert.Equal(2m, await admin.BalanceAsync(payer));
        await using var check = app.Db();
        var transfers = await check.LedgerTransfers.AsNoTracking().Where(t => t.Kind == "TEST").ToListAsync(ct);
        Assert.Equal(["i", "j", "k", "l"], transfers.Select(t => t.IdempotencyKey).Order().ToArray());
        Assert.Equal(moved.Order().ToArray(), transfers.Select(t => t.Id).Order().ToArray());
    }

    [Fact]
    public async Task TransferAll_ConcurrentOverlappingSets_KeepTotalsWithoutDeadlocks()
    {
        await using var app = await Apps.CreateAsync("postgres");
        var admin = app.Admin();
        var accounts = new List<Guid>();
        for (var i = 0; i < 6; i++)
        {
            var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());
            await admin.DepositAsync(account, 1000m);
            accounts.Add(account);
        }

        // 200 sets of 5 transfers between random pairs, in random order, on 8 connections: every set
        // touches accounts others touch too; locking them in id order means none waits in a cycle.
        var random = new Random(7);
        var sets = Enumerable.Range(0, 200).Select(s => Enumerable.Range(0, 5).Select(t =>
        {
            var from = accounts[random.Next(accounts.Count)];
            var to = accounts[(accounts.IndexOf(from) + 1 + random.Next(accounts.Count - 1)) % accounts.Count];
            return new TransferRequest(from, to, random.Next(1, 300), "USD", "TEST", $"s{s}t{t}");
        }).ToArray()).ToList();
        var moved = 0;
        var deadlocks = 0;
        await Parallel.ForEachAsync(sets, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (set, ct) =>
        {
            await using var db = app.Db();
            try
            {
                await using var tx = await db.Database.BeginTransactionAsync(ct);
                if ((await Tally.Features.Ledger.Ledger.TransferAllAsync(db, set, DateTime.UtcNow, ct)).TransferIds is not null)
                {
                    await tx.CommitAsync(ct);
                    Interlocked.Increment(ref moved);
                }
            }
            catch (Exception e) when (Tally.Data.DbErrors.IsTransient(e))
            {
                Interlocked.Increment(ref deadlocks);
            }
        });

        Assert.Equal(0, deadlocks);
        Assert.Equal(200, moved); // 1,000.00 each, and all 1,000 transfers together move under 3,000.00: always covered
        await using var check = app.Db();
        var ct = TestContext.Current.CancellationToken;
        var balances = await check.LedgerAccounts.AsNoTracking().ToListAsync(ct);
        var transfers = await check.LedgerTransfers.AsNoTracking().ToListAsync(ct);
        Assert.Equal(0, balances.Sum(a => a.BalanceMinor));
        Assert.Equal(1000 + 6, transfers.Count);
        foreach (var account in balances)
        {
            Assert.Equal(transfers.Where(t => t.CreditAccountId == account.Id).Sum(t => t.AmountMinor)
                - transfers.Where(t => t.DebitAccountId == account.Id).Sum(t => t.AmountMinor), account.BalanceMinor);
        }
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

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Deposit_PastTheCeiling_IsRefusedAndTotalsStayReadable(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        var max = Currencies.MaxAmount("USD");

        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = max + 0.01m, idempotencyKey = "over" })
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = decimal.MaxValue, idempotencyKey = "huge" })
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = max - 1m, idempotencyKey = "almost" })
            .ExpectAsync(HttpStatusCode.Created);
        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = 1m, idempotencyKey = "exactly" })
            .ExpectAsync(HttpStatusCode.Created);
        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = 0.01m, idempotencyKey = "past" })
            .ExpectProblemAsync(HttpStatusCode.Conflict, "LEDGER.BALANCE_LIMIT");

        Assert.Equal(max, await admin.BalanceAsync(account));
        var totals = await admin.GetAsync("/api/admin/ledger/totals").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0m, totals[0].GetProperty("total").GetDecimal());
        await using var db = app.Db();
        Assert.Equal(2, await db.LedgerTransfers.CountAsync(TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task FundingAccount_PastWhatItMayIssue_RefusesTheDeposit(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        await admin.DepositAsync(account, 1m);
        await using var db = app.Db();
        var ct = TestContext.Current.CancellationToken;
        // As if a million accounts held deposits: the funding account is 5 minor units short of its floor.
        var funding = Tally.Features.Ledger.Ledger.FundingAccountId("USD");
        await db.Database.ExecuteSqlAsync($"UPDATE ledger_accounts SET balance_minor = {5 - Currencies.MaxIssuedMinor} WHERE id = {funding}", ct);

        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = 0.10m, idempotencyKey = "past-issue" })
            .ExpectProblemAsync(HttpStatusCode.Conflict, "LEDGER.BALANCE_LIMIT");
        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId = account, amount = 0.05m, idempotencyKey = "up-to-issue" })
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal(1.05m, await admin.BalanceAsync(account));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Database_RefusesBalancesAndAmountsPastTheCeiling(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        await admin.DepositAsync(account, 1m);
        await using var db = app.Db();
        var ct = TestContext.Current.CancellationToken;

        var over = await Assert.ThrowsAnyAsync<Exception>(() =>
            db.Database.ExecuteSqlAsync($"UPDATE ledger_accounts SET balance_minor = {Currencies.MaxMinor + 1} WHERE id = {account}", ct));
        Assert.True(storage == "sqlite" || Tally.Data.DbErrors.IsCheckViolation(over), over.ToString());
        // Past bigint: SQLite would store a floating-point number, PostgreSQL raises an overflow.
        await Assert.ThrowsAnyAsync<Exception>(() =>
            db.Database.ExecuteSqlAsync($"UPDATE ledger_accounts SET balance_minor = balance_minor + {long.MaxValue} WHERE id = {account}", ct));
        var funding = Tally.Features.Ledger.Ledger.FundingAccountId("USD");
        await Assert.ThrowsAnyAsync<Exception>(() =>
            db.Database.ExecuteSqlAsync($"UPDATE ledger_accounts SET balance_minor = {-Currencies.MaxIssuedMinor - 1} WHERE id = {funding}", ct));
        await Assert.ThrowsAnyAsync<Exception>(() => db.Database.ExecuteSqlAsync(
            $"INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_minor, currency, kind, idempotency_key, created_at) VALUES ({Guid.NewGuid()}, {funding}, {account}, {Currencies.MaxMinor + 1}, {"USD"}, {"TEST"}, {"too-much"}, {DateTime.UtcNow})",
            ct));

        Assert.Equal(1m, await admin.BalanceAsync(account));
        var totals = await admin.GetAsync("/api/admin/ledger/totals").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0m, totals[0].GetProperty("total").GetDecimal());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task TransferAll_PastTheCeiling_MovesNothing(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var ct = TestContext.Current.CancellationToken;
        var payer = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        var payee = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        await admin.DepositAsync(payer, 10m);
        await admin.DepositAsync(payee, Currencies.MaxAmount("USD") - 1m);

        await using (var db = app.Db())
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            var moved = await Tally.Features.Ledger.Ledger.TransferAllAsync(db,
                [new TransferRequest(payer, payee, 60, "USD", "TEST", "a"), new TransferRequest(payer, payee, 60, "USD", "TEST", "b")], DateTime.UtcNow, ct);
            Assert.Null(moved.TransferIds);
        }
        await using (var db = app.Db())
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            var one = await Tally.Features.Ledger.Ledger.TransferAsync(db, new TransferRequest(payer, payee, 101, "USD", "TEST", "c"), DateTime.UtcNow, ct);
            Assert.Equal(new TransferResult.BalanceLimitExceeded(payee), one);
        }
        Assert.Equal(10m, await admin.BalanceAsync(payer));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Transfer_EachRefusal_AnswersItsReasonAndMovesNothing(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var ct = TestContext.Current.CancellationToken;
        var payer = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        var payee = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        var euro = await admin.CreateAccountAsync(await admin.CreateUserAsync(), "EUR");
        var full = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        await admin.DepositAsync(payer, 10m);
        await admin.DepositAsync(full, Currencies.MaxAmount("USD") - 0.50m);
        var funding = Tally.Features.Ledger.Ledger.FundingAccountId("USD");
        var missing = Guid.NewGuid();
        await using (var db = app.Db())
        {
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            Assert.IsType<TransferResult.Transferred>(await Tally.Features.Ledger.Ledger.TransferAsync(db, new TransferRequest(payer, payee, 100, "USD", "TEST", "used"), DateTime.UtcNow, ct));
            await tx.CommitAsync(ct);
        }

        async Task<TransferResult> TransferAsync(Guid from, Guid to, long minor, string key = "fresh")
        {
            await using var db = app.Db();
            await using var tx = await db.Database.BeginTransactionAsync(ct); // rolled back
            return await Tally.Features.Ledger.Ledger.TransferAsync(db, new TransferRequest(from, to, minor, "USD", "TEST", key), DateTime.UtcNow, ct);
        }

        Assert.Equal(new TransferResult.InsufficientFunds(), await TransferAsync(payer, payee, 901));
        Assert.Equal(new TransferResult.AccountNotFound(missing), await TransferAsync(payer, missing, 100));
        Assert.Equal(new TransferResult.AccountNotFound(missing), await TransferAsync(missing, payee, 100));
        Assert.Equal(new TransferResult.CurrencyMismatch(), await TransferAsync(payer, euro, 100));
        Assert.Equal(new TransferResult.CurrencyMismatch(), await TransferAsync(payer, payer, 100));
        Assert.Equal(new TransferResult.BalanceLimitExceeded(full), await TransferAsync(payer, full, 51));
        // A used key answers first, whatever else the transfer would meet.
        Assert.Equal(new TransferResult.AlreadyDone(), await TransferAsync(payer, payee, 100_000, "used"));
        Assert.Equal(new TransferResult.AlreadyDone(), await TransferAsync(payer, missing, 100, "used"));
        await using (var db = app.Db())
        {
            // As if a million accounts held deposits: the funding account is 5 minor units short of its floor.
            await db.Database.ExecuteSqlAsync($"UPDATE ledger_accounts SET balance_minor = {5 - Currencies.MaxIssuedMinor} WHERE id = {funding}", ct);
        }
        Assert.Equal(new TransferResult.BalanceLimitExceeded(funding), await TransferAsync(funding, payee, 6));

        // A set answers the first reason it finds, and moves none of its transfers.
        await using (var db = app.Db())
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            var set = await Tally.Features.Ledger.Ledger.TransferAllAsync(db,
                [new TransferRequest(payer, payee, 100, "USD", "TEST", "a"), new TransferRequest(payer, full, 100, "USD", "TEST", "b")], DateTime.UtcNow, ct);
            Assert.Equal(new TransferAllResult(null, new TransferResult.BalanceLimitExceeded(full)), set);
        }
        Assert.Equal((9m, 1m), (await admin.BalanceAsync(payer), await admin.BalanceAsync(payee)));
        await using var check = app.Db();
        Assert.Equal(["used"], await check.LedgerTransfers.Where(t => t.Kind == "TEST").Select(t => t.IdempotencyKey).ToListAsync(ct));
    }

    [Theory]
    [InlineData("79228162514264337593543950335", "USD")]
    [InlineData("-79228162514264337593543950335", "USD")]
    [InlineData("10000000000000.01", "USD")]
    [InlineData("1000000000000001", "JPY")]
    [InlineData("1000000000000.001", "KWD")]
    public void Currencies_CheckAmount_RefusesPastTheCeilingWithoutOverflow(string amount, string currency)
    {
        var check = Currencies.CheckAmount(decimal.Parse(amount, System.Globalization.CultureInfo.InvariantCulture), currency);
        Assert.Null(check.Minor);
        Assert.StartsWith("must be at most", check.Error);
    }

    [Theory]
    [InlineData("10000000000000", "USD", 1_000_000_000_000_000L)]
    [InlineData("1000000000000000", "JPY", 1_000_000_000_000_000L)]
    [InlineData("1000000000000", "KWD", 1_000_000_000_000_000L)]
    public void Currencies_CheckAmount_AcceptsTheCeilingItself(string amount, string currency, long minor) =>
        Assert.Equal(minor, Currencies.CheckAmount(decimal.Parse(amount, System.Globalization.CultureInfo.InvariantCulture), currency).Minor);
}
