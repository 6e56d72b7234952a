using System.Net;
using Microsoft.EntityFrameworkCore;
using Tally.Tests.Harness;

namespace Tally.Tests.Hardening;

/// <summary>
/// The fuzz harness itself can fail: a write between two fingerprints is seen (through the cheap
/// change marker too), a balance its transfers do not explain is reported, and the runner turns a
/// 5xx, a dropped request and a refusal that wrote into failures while letting the rest pass.
/// </summary>
public class FuzzHarnessTests
{
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task RowSnapshot_SeesInsertsAndUpdates_AndNothingWhenNothingWasWritten(string storage)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        await using var rows = await RowSnapshot.OpenAsync(app, ct);

        var first = await rows.TakeAsync(ct);
        await admin.GetAsync($"/api/admin/ledger/accounts/{account}", ct);
        var unchanged = await rows.TakeAsync(ct);
        Assert.Empty(rows.Changes(first, unchanged));

        await admin.DepositAsync(account, 12.34m);
        var deposited = await rows.TakeAsync(ct);
        Assert.Contains(rows.Changes(unchanged, deposited), c => c.StartsWith("ledger_transfers: rows: ", StringComparison.Ordinal));

        // An update that adds no row and stamps no time: only the money sum moves.
        await using (var db = app.Db())
        {
            await db.Database.ExecuteSqlAsync($"UPDATE ledger_accounts SET balance_minor = balance_minor + 1 WHERE id = {account}", ct);
        }
        Assert.Equal(["ledger_accounts: sum of balance_minor: 0 -> 1"], rows.Changes(deposited, await rows.TakeAsync(ct)));
    }

    [Fact]
    public async Task LedgerAudit_ReportsABalanceItsTransfersDoNotExplain()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var account = await admin.CreateAccountAsync(await admin.CreateUserAsync());
        await admin.DepositAsync(account, 10m);
        Assert.Empty(await LedgerAudit.CheckAsync(app, ct));

        await using (var db = app.Db())
        {
            await db.Database.ExecuteSqlAsync($"UPDATE ledger_accounts SET balance_minor = balance_minor + 5 WHERE id = {account}", ct);
        }
        var problems = (await LedgerAudit.CheckAsync(app, ct)).Select(p => p.Error!).ToList();
        Assert.Contains(problems, p => p.Contains($"account {account}", StringComparison.Ordinal) && p.Contains("its transfers say 1000", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("ledger total in USD is 0.05, not 0", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Fuzzer_Reports5xx_NoAnswer_AndRefusalsThatWrote_ButNotWritesThatSucceeded()
    {
        var ct = TestContext.Current.CancellationToken;
        var logs = new CapturedLogs();
        await using var app = await Apps.CreateAsync("sqlite", null, logs.Register);
        var admin = app.Admin();
        await using var rows = await RowSnapshot.OpenAsync(app, ct);

        // A stand-in server whose behaviour each path names; it writes through the real app.
        var stub = new HttpClient(new Stub(async request =>
        {
            var path = request.RequestUri!.AbsolutePath;
            if (path.Contains("write", StringComparison.Ordinal))
            {
                await admin.CreateUserAsync();
            }
            return path.EndsWith("throw", StringComparison.Ordinal)
                ? throw new HttpRequestException("connection reset")
                : new HttpResponseMessage((HttpStatusCode)int.Parse(path[^3..], System.Globalization.CultureInfo.InvariantCulture));
        }))
        { BaseAddress = new Uri("http://stub/") };
        var caller = new Caller("stub", stub);
        var operation = new ApiOperation("POST", "/stub", [], null);
        FuzzCase Case(string path) => new(operation, caller, path, new FuzzValue("x"), () => new HttpRequestMessage(HttpMethod.Post, path));

        var fuzzer = new Fuzzer(rows, logs);
        await fuzzer.RunAsync([Case("/500"), Case("/write-201"), Case("/write-400"), Case("/400"), Case("/throw"), Case("/200")], ct);

        Assert.Equal(6, fuzzer.Requests);
        Assert.Equal(
            [("5xx answer", "/500"), ("refused but wrote to the database", "/write-400"), ("no answer", "/throw")],
            fuzzer.Failures.Select(f => (f.Rule, f.Case!.Target)));
        Assert.Contains("users: rows: ", fuzzer.Failures[1].Error, StringComparison.Ordinal);
        Assert.Contains("connection reset", fuzzer.Failures[2].Error, StringComparison.Ordinal);
        Assert.Contains("/write-400", Fuzzer.Describe(fuzzer.Failures), StringComparison.Ordinal);
    }

    private sealed class Stub(Func<HttpRequestMessage, Task<HttpResponseMessage>> answer) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) => answer(request);
    }
}
