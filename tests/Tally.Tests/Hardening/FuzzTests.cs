using System.Net;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Hardening;

/// <summary>
/// No request may make the service answer 500 or lose data: zero 5xx answers under a fuzz of every
/// route with malformed and extreme input. Every operation of the app's own OpenAPI
/// document (the sandboxes included) is sent malformed and extreme values, one field at a time, by
/// every kind of caller; then the ledger must still add up.
/// </summary>
public class FuzzTests
{
    /// <summary>
    /// The API role only: nothing runs in the background, so every row written belongs to the request
    /// that was just answered. The sandboxes are on, so their routes are in the document and fuzzed.
    /// </summary>
    private static readonly Dictionary<string, string?> Settings = new()
    {
        ["Tally:Roles:0"] = "api",
        ["Sandbox:Enabled"] = "true",
        // The in-memory server is bound to no address: the SimpleFIN sandbox builds its URLs from this.
        ["Sandbox:SimpleFin:PublicUrl"] = "http://127.0.0.1:5080",
        // The login sync waits for a worker this instance does not run: a short wait keeps the fuzz short.
        ["BalanceSync:AuthSyncTimeoutMs"] = "250",
        // The instance registers before the fuzz starts; a heartbeat during it would be a write no request made.
        ["Tally:HeartbeatSeconds"] = "3600",
        ["RateLimits:sandbox:PermitsPerSecond"] = "1000",
        ["RateLimits:simplefin:PermitsPerSecond"] = "1000",
        // Thousands of expected refusals (and the 5xx under test) would flood the console; the test reads them from CapturedLogs.
        ["Logging:Console:LogLevel:Default"] = "None",
    };

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task EveryRoute_FuzzedInput_NeverAnswers5xxNorHangs_RefusalsWriteNothing_LedgerAddsUp(string storage)
    {
        var ct = TestContext.Current.CancellationToken;
        var logs = new CapturedLogs();
        await using var app = await Apps.CreateAsync(storage, Settings, logs.Register);
        var world = await FuzzWorld.SeedAsync(app);

        var document = await app.Admin().GetAsync("/openapi/v1.json", ct).ExpectAsync(HttpStatusCode.OK);
        var operations = OpenApiOperations.Read(document);
        Assert.Contains(operations, o => o.Path.StartsWith("/sandbox/", StringComparison.Ordinal));
        Assert.Contains(operations, o => o.Body is not null);

        // The caller who may do everything (the guardian, with every role) sends the mutations; each
        // valid request also goes out from every single role, from nobody, and from a user Tally never heard of.
        var everything = Caller(app, "guardian with every role", world.GuardianId, Roles.Admin, Roles.Guardian, Roles.User);
        Caller[] callers =
        [
            Caller(app, "anonymous", null),
            Caller(app, "admin", Guid.Empty, Roles.Admin),
            Caller(app, "guardian", world.GuardianId, Roles.Guardian, Roles.User),
            Caller(app, "user", world.JuniorId, Roles.User),
            Caller(app, "unknown user", Guid.NewGuid(), Roles.User),
            everything,
        ];

        await using var rows = await RowSnapshot.OpenAsync(app, ct);
        var fuzzer = new Fuzzer(rows, logs);
        await fuzzer.RunAsync(new FuzzPlan(world, operations, callers, everything).Cases(), ct);
        var failures = fuzzer.Failures.Concat(await LedgerAudit.CheckAsync(app, ct)).ToList();

        var summary = fuzzer.Summary(storage) + $"\n  watched {rows.Tables} tables ({rows.FullReads} full reads); {operations.Count} operations in the OpenAPI document";
        TestContext.Current.TestOutputHelper?.WriteLine(summary);
        TestContext.Current.TestOutputHelper?.WriteLine(Fuzzer.Describe(failures));
        Assert.True(failures.Count == 0, $"{summary}\n{Fuzzer.Describe(failures)}");
    }

    private static Caller Caller(TallyApp app, string name, Guid? userId, params string[] roles)
    {
        var client = app.CreateClient();
        client.Timeout = TimeSpan.FromSeconds(30);
        if (userId is { } id)
        {
            client.DefaultRequestHeaders.Authorization = new("Bearer", Auth.CreateToken(TallyApp.SigningKey, id, roles, TimeSpan.FromHours(1)));
        }
        return new Caller(name, client);
    }
}
