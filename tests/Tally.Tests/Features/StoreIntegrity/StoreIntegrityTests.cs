using System.Net;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using Tally.Features.StoreIntegrity;
using Tally.Jobs.Scheduling;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.StoreIntegrity;

public class StoreIntegrityTests
{
    private const string Managed = "managed_subscription";
    private const string ManagedAnnual = "managed_subscription_annual";

    // The schedule stays off so a 5-minute boundary during a test cannot repair before the manual run does.
    internal static Dictionary<string, string?> ManualOnly => new() { [$"Jobs:{RepairHasOrders.Name}:Enabled"] = "false" };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task SyncAccounts_RepairsOnlyActiveUnflaggedAccountsWithActiveManagedOrders(string storage)
    {
        var logs = new CapturedLogs();
        await using var app = await Apps.CreateAsync(storage, ManualOnly, logs.Register);
        var admin = app.Admin();

        var seller = Guid.NewGuid();        // active, unflagged, sells a managed subscription (and buys one too)
        var buyer = Guid.NewGuid();         // active, unflagged, buys an annual managed subscription
        var flagged = Guid.NewGuid();       // already has_orders = true, on managed orders: left alone
        var inactive = Guid.NewGuid();      // inactive: never repaired, whatever its orders
        var cancelledOnly = Guid.NewGuid(); // its managed order is not active
        var otherType = Guid.NewGuid();     // its active order is not a managed subscription
        var noOrders = Guid.NewGuid();
        await LoadAccountsAsync(admin,
            (seller, true, false), (buyer, true, false), (flagged, true, true), (inactive, false, false),
            (cancelledOnly, true, false), (otherType, true, false), (noOrders, true, false));
        await LoadOrdersAsync(admin,
            (seller, flagged, "active", Managed),
            (flagged, seller, "active", Managed),
            (flagged, buyer, "active", ManagedAnnual),
            (inactive, flagged, "active", Managed),
            (flagged, inactive, "active", Managed),
            (cancelledOnly, flagged, "cancelled", Managed),
            (flagged, cancelledOnly, "expired", ManagedAnnual),
            (otherType, flagged, "active", "one_off"),
            (flagged, otherType, "active", "managed"));
        await RecordAccountWritesAsync(app, storage);

        var first = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(Sorted(seller, buyer), Ids(first.GetProperty("updatedIds")));

        foreach (var (id, hasOrders) in new[] { (seller, true), (buyer, true), (flagged, true), (inactive, false), (cancelledOnly, false), (otherType, false), (noOrders, false) })
        {
            var account = await admin.GetAsync($"/api/admin/store/accounts/{id}").ExpectAsync(HttpStatusCode.OK);
            Assert.True(account.GetProperty("hasOrders").GetBoolean() == hasOrders, $"account {id}: hasOrders should be {hasOrders}");
        }
        // The one statement wrote exactly the repaired rows: the already-flagged account was not rewritten.
        await using (var db = app.Db())
        {
            var written = await db.Database.SqlQueryRaw<Guid>("SELECT id FROM account_writes").ToListAsync(Ct);
            Assert.Equal(Sorted(seller, buyer), written.Order().ToList());
        }

        var second = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, second.GetProperty("updatedIds").GetArrayLength());

        var runs = await admin.GetAsync($"/api/admin/cron-runs?job={RepairHasOrders.Name}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(2, runs.GetArrayLength());
        var (latest, earlier) = (runs[0], runs[1]);
        Assert.Equal(first.GetProperty("runId").GetInt64(), earlier.GetProperty("id").GetInt64());
        Assert.Equal(second.GetProperty("runId").GetInt64(), latest.GetProperty("id").GetInt64());
        Assert.All(new[] { earlier, latest }, r =>
        {
            Assert.Equal(CronRunStatus.Success, r.GetProperty("status").GetString());
            Assert.Equal(JobRunner.ManualTrigger, r.GetProperty("trigger").GetString());
        });
        Assert.Equal(2, earlier.GetProperty("processedCount").GetInt32());
        Assert.Equal(0, latest.GetProperty("processedCount").GetInt32());

        Assert.Equal(["Found 2 accounts out of sync", "No accounts out of sync"], logs.Messages(typeof(RepairHasOrders).FullName!));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task SyncAccounts_StatementFails_LogsInitiatorAndRecordsFailedRun(string storage)
    {
        var logs = new CapturedLogs();
        await using var app = await Apps.CreateAsync(storage, ManualOnly, logs.Register);
        var admin = app.Admin();
        await using (var db = app.Db())
        {
            await db.Database.ExecuteSqlRawAsync("DROP TABLE store_orders", Ct);
        }

        var problem = await admin.PostAsync("/api/admin/store/sync-accounts", null)
            .ExpectProblemAsync(HttpStatusCode.ServiceUnavailable, "STORE.SYNC_FAILED");

        var runs = await admin.GetAsync($"/api/admin/cron-runs?job={RepairHasOrders.Name}").ExpectAsync(HttpStatusCode.OK);
        var run = Assert.Single(runs.EnumerateArray());
        Assert.Equal(problem.GetProperty("runId").GetInt64(), run.GetProperty("id").GetInt64());
        Assert.Equal(CronRunStatus.Failed, run.GetProperty("status").GetString());
        Assert.Contains("store_orders", run.GetProperty("errorMessage").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.String, run.GetProperty("finishedAt").ValueKind);

        var error = Assert.Single(logs.Entries, e => e.Category == typeof(RepairHasOrders).FullName && e.Level == Microsoft.Extensions.Logging.LogLevel.Error);
        Assert.Equal(RepairHasOrders.Initiator, error.Fields["Initiator"]);
        Assert.NotNull(error.Exception);
    }

    [Fact]
    public async Task SyncAccounts_CountsOnlyTheConfiguredManagedTypes()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?>(ManualOnly)
        {
            ["StoreIntegrity:ManagedSubscriptionTypes:0"] = "agency_plan",
            ["StoreIntegrity:ManagedSubscriptionTypes:1"] = "agency_plan_annual",
        });
        var admin = app.Admin();
        var (agency, formerlyManaged, counterpart) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());
        await LoadAccountsAsync(admin, (agency, true, false), (formerlyManaged, true, false), (counterpart, true, true));
        await LoadOrdersAsync(admin, (agency, counterpart, "active", "agency_plan"), (formerlyManaged, counterpart, "active", Managed));

        var run = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);

        Assert.Equal([agency], Ids(run.GetProperty("updatedIds")));
    }

    [Fact]
    public async Task Startup_WithoutManagedTypes_FailsNamingTheSetting()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?>
        {
            ["StoreIntegrity:ManagedSubscriptionTypes:0"] = " ",
            ["StoreIntegrity:ManagedSubscriptionTypes:1"] = "",
        });

        var failure = await Assert.ThrowsAnyAsync<Exception>(() => app.Admin().GetAsync("/healthz"));

        Assert.Contains("StoreIntegrity:ManagedSubscriptionTypes", failure.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SyncAccounts_WhileRunningElsewhere_AnswersConflictAndRecordsTheSkip()
    {
        await using var app = TallyApp.Sqlite(ManualOnly);
        var admin = app.Admin();
        var (stale, counterpart) = (Guid.NewGuid(), Guid.NewGuid());
        await LoadAccountsAsync(admin, (stale, true, false), (counterpart, true, true));
        await LoadOrdersAsync(admin, (stale, counterpart, "active", Managed));

        await using (await app.Get<IDistributedLock>().TryAcquireAsync(RepairHasOrders.Name, TimeSpan.FromMinutes(1), Ct))
        {
            var problem = await admin.PostAsync("/api/admin/store/sync-accounts", null)
                .ExpectProblemAsync(HttpStatusCode.Conflict, "STORE.SYNC_RUNNING");
            var runs = await admin.GetAsync($"/api/admin/cron-runs?job={RepairHasOrders.Name}&includeSkipped=true").ExpectAsync(HttpStatusCode.OK);
            var skipped = Assert.Single(runs.EnumerateArray());
            Assert.Equal(problem.GetProperty("runId").GetInt64(), skipped.GetProperty("id").GetInt64());
            Assert.Equal(CronRunStatus.SkippedLocked, skipped.GetProperty("status").GetString());
        }
        var account = await admin.GetAsync($"/api/admin/store/accounts/{stale}").ExpectAsync(HttpStatusCode.OK);
        Assert.False(account.GetProperty("hasOrders").GetBoolean());

        var run = await admin.PostAsync("/api/admin/store/sync-accounts", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal([stale], Ids(run.GetProperty("updatedIds")));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Load_FullBatches_LoadEveryRow(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, ManualOnly);
        var admin = app.Admin();
        var accounts = Enumerable.Range(0, StoreEndpoints.MaxBatch).Select(i => Account(Guid.NewGuid(), true, i % 2 == 0)).ToArray();

        var loaded = await admin.PostJsonAsync("/api/admin/store/accounts", accounts).ExpectAsync(HttpStatusCode.Created);
        var ids = Ids(loaded.GetProperty("ids"));
        var orders = ids.Select((id, i) => new
        {
            sellerAccount = id,
            buyerAccount = ids[(i + 1) % ids.Count],
            status = "active",
            productType = i % 3 == 0 ? Managed : "one_off",
            metadata = new { index = i },
        }).ToArray();
        var placed = await admin.PostJsonAsync("/api/admin/store/orders", orders).ExpectAsync(HttpStatusCode.Created);

        Assert.Equal(StoreEndpoints.MaxBatch, loaded.GetProperty("created").GetInt32());
        Assert.Equal(StoreEndpoints.MaxBatch, placed.GetProperty("created").GetInt32());
        await using var db = app.Db();
        Assert.Equal(StoreEndpoints.MaxBatch, await db.StoreAccounts.CountAsync(Ct));
        Assert.Equal(StoreEndpoints.MaxBatch, await db.StoreOrders.CountAsync(Ct));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Load_SameRowsAgain_IsAnsweredAndChangedRowsAreRefused(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, ManualOnly);
        var admin = app.Admin();
        var (a, b, c) = (Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid());

        var created = await admin.PostJsonAsync("/api/admin/store/accounts", new[] { Account(a, true, false), Account(b, true, true) })
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal([a, b], Ids(created.GetProperty("ids")));
        Assert.Equal(2, created.GetProperty("created").GetInt32());

        var again = await admin.PostJsonAsync("/api/admin/store/accounts", new[] { Account(a, true, false), Account(b, true, true) })
            .ExpectAsync(HttpStatusCode.OK);
        Assert.Equal((0, 2), (again.GetProperty("created").GetInt32(), again.GetProperty("unchanged").GetInt32()));

        await admin.PostJsonAsync("/api/admin/store/accounts", new[] { Account(c, true, false), Account(a, false, false) })
            .ExpectProblemAsync(HttpStatusCode.Conflict, "STORE.ACCOUNT_EXISTS");
        await admin.GetAsync($"/api/admin/store/accounts/{c}").ExpectProblemAsync(HttpStatusCode.NotFound, "STORE.ACCOUNT_NOT_FOUND");

        var mixed = await admin.PostJsonAsync("/api/admin/store/accounts", new[] { Account(c, true, false), Account(a, true, false) })
            .ExpectAsync(HttpStatusCode.Created);
        Assert.Equal((1, 1), (mixed.GetProperty("created").GetInt32(), mixed.GetProperty("unchanged").GetInt32()));

        // Server-chosen ids come back in request order.
        var generated = await admin.PostJsonAsync("/api/admin/store/accounts", new[] { new { active = true, hasOrders = false } })
            .ExpectAsync(HttpStatusCode.Created);
        var newId = Ids(generated.GetProperty("ids")).Single();
        var stored = await admin.GetAsync($"/api/admin/store/accounts/{newId}").ExpectAsync(HttpStatusCode.OK);
        Assert.False(stored.GetProperty("hasOrders").GetBoolean());

        var order = Guid.NewGuid();
        await admin.PostRawAsync("/api/admin/store/orders",
                $$$"""[{"id":"{{{order}}}","sellerAccount":"{{{a}}}","buyerAccount":"{{{b}}}","status":"active","productType":"{{{Managed}}}","metadata":{"plan":"pro","seats":3}}]""")
            .ExpectAsync(HttpStatusCode.Created);
        // The same order with its metadata written differently is the same order.
        await admin.PostRawAsync("/api/admin/store/orders",
                $$$"""[{"id":"{{{order}}}","sellerAccount":"{{{a}}}","buyerAccount":"{{{b}}}","status":"active","productType":"{{{Managed}}}","metadata":{ "seats": 3, "plan": "pro" }}]""")
            .ExpectAsync(HttpStatusCode.OK);
        await admin.PostRawAsync("/api/admin/store/orders",
                $$$"""[{"id":"{{{order}}}","sellerAccount":"{{{a}}}","buyerAccount":"{{{b}}}","status":"cancelled","productType":"{{{Managed}}}","metadata":{"plan":"pro","seats":3}}]""")
            .ExpectProblemAsync(HttpStatusCode.Conflict, "STORE.ORDER_EXISTS");

        var read = await admin.GetAsync($"/api/admin/store/orders/{order}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("active", read.GetProperty("status").GetString());
        Assert.Equal(3, read.GetProperty("metadata").GetProperty("seats").GetInt32());
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Load_SameBatchConcurrently_StoresEachRowOnce(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, ManualOnly);
        var admin = app.Admin();
        var batch = Enumerable.Range(0, 200).Select(i => Account(Guid.NewGuid(), true, i % 2 == 0)).ToArray();

        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            using var response = await admin.PostJsonAsync("/api/admin/store/accounts", batch);
            var body = await response.ReadJsonAsync();
            Assert.True(response.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}");
            return body.GetProperty("created").GetInt32();
        }));

        Assert.Equal(batch.Length, answers.Sum());
        await using var db = app.Db();
        Assert.Equal(batch.Length, await db.StoreAccounts.CountAsync(Ct));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Load_BadInput_AnswersProblemAndLoadsNothing(string storage)
    {
        await using var app = await Apps.CreateAsync(storage, ManualOnly);
        var admin = app.Admin();
        var known = Guid.NewGuid();

        var empty = await admin.PostRawAsync("/api/admin/store/accounts", "[]").ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(empty.GetProperty("errors").TryGetProperty("$", out _));
        var missing = await admin.PostRawAsync("/api/admin/store/accounts", $$"""[{"id":"{{known}}","active":true,"hasOrders":false},{"active":true}]""")
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(missing.GetProperty("errors").TryGetProperty("[1].hasOrders", out _));
        await admin.PostRawAsync("/api/admin/store/accounts", """[{"active":"yes","hasOrders":false}]""")
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "BAD_REQUEST");
        await admin.PostRawAsync("/api/admin/store/accounts", """{"active":true,"hasOrders":false}""")
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "BAD_REQUEST");
        await admin.PostRawAsync("/api/admin/store/accounts", "[null]").ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        var twice = await admin.PostRawAsync("/api/admin/store/accounts", $$"""[{"id":"{{known}}","active":true,"hasOrders":false},{"id":"{{known}}","active":true,"hasOrders":false}]""")
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        Assert.True(twice.GetProperty("errors").TryGetProperty("[1].id", out _));
        var tooMany = Enumerable.Range(0, StoreEndpoints.MaxBatch + 1).Select(_ => new { active = true, hasOrders = false }).ToArray();
        await admin.PostJsonAsync("/api/admin/store/accounts", tooMany).ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        await using (var db = app.Db())
        {
            Assert.Equal(0, await db.StoreAccounts.CountAsync(Ct));
        }

        await LoadAccountsAsync(admin, (known, true, false));
        var fields = await admin.PostRawAsync("/api/admin/store/orders",
                $$"""[{"sellerAccount":"{{known}}","buyerAccount":"{{known}}","status":" ","metadata":"plan=pro"}]""")
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "VALIDATION_FAILED");
        var errors = fields.GetProperty("errors");
        Assert.All(new[] { "[0].status", "[0].productType", "[0].metadata" }, f => Assert.True(errors.TryGetProperty(f, out _), $"no error for {f}: {errors}"));
        await admin.PostRawAsync("/api/admin/store/orders", $$"""[{"sellerAccount":"{{known}}","buyerAccount":"not-a-uuid","status":"active","productType":"x"}]""")
            .ExpectProblemAsync(HttpStatusCode.BadRequest, "BAD_REQUEST");
        await using (var db = app.Db())
        {
            Assert.Equal(0, await db.StoreOrders.CountAsync(Ct));
        }
    }

    [Fact]
    public async Task TwoSchedulers_NeverRunTheJobAtOnce()
    {
        var database = await Servers.NewPostgresDatabaseAsync();
        Dictionary<string, string?> Instance(string name) => new()
        {
            ["Tally:InstanceId"] = name,
            ["Jobs:Lock"] = "postgres",
            [$"Jobs:{RepairHasOrders.Name}:Cron"] = "* * * * * *",
        };
        await using var first = TallyApp.Postgres(database, Instance("instance-a"));
        await using var second = TallyApp.Postgres(database, Instance("instance-b"));
        var admin = first.Admin();
        _ = second.Admin();
        var (stale, counterpart) = (Guid.NewGuid(), Guid.NewGuid());
        await LoadAccountsAsync(admin, (stale, true, false), (counterpart, true, true));
        await LoadOrdersAsync(admin, (counterpart, stale, "active", Managed));
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);

        // Hold off every write to store_accounts for 3 s: whichever instance runs the job now stays
        // inside its run (and its lock) while the other's scheduler fires three more times.
        await using (var blocker = new NpgsqlConnection(database))
        {
            await blocker.OpenAsync(Ct);
            await using var tx = await blocker.BeginTransactionAsync(Ct);
            await using (var lockTable = new NpgsqlCommand("LOCK TABLE store_accounts IN EXCLUSIVE MODE", blocker, tx))
            {
                await lockTable.ExecuteNonQueryAsync(Ct);
            }
            await Task.Delay(TimeSpan.FromSeconds(3), Ct);
            await tx.CommitAsync(Ct);
        }
        await Task.Delay(TimeSpan.FromSeconds(3), Ct);
        await first.DisposeAsync();
        await second.DisposeAsync();

        await using var check = TallyApp.Postgres(database, ManualOnly);
        await using var db = check.Db();
        var rows = await db.CronRuns.AsNoTracking().Where(r => r.JobName == RepairHasOrders.Name).ToListAsync(Ct);
        var runs = rows.Where(r => r.Status is CronRunStatus.Success or CronRunStatus.Failed && r.FinishedAt is not null)
            .OrderBy(r => r.StartedAt).ToList();
        Assert.True(runs.Count >= 3, $"only {runs.Count} runs");
        for (var i = 1; i < runs.Count; i++)
        {
            Assert.True(runs[i].StartedAt >= runs[i - 1].FinishedAt,
                $"run {runs[i].Id} on {runs[i].InstanceId} started at {runs[i].StartedAt:O}, before run {runs[i - 1].Id} on {runs[i - 1].InstanceId} finished at {runs[i - 1].FinishedAt:O}");
        }
        // Both were alive and competing: the lock turned one away while the other was inside a run.
        Assert.Equal(["instance-a", "instance-b"], rows.Select(r => r.InstanceId).Distinct().Order().ToList());
        Assert.Contains(rows, skipped => skipped.Status == CronRunStatus.SkippedLocked
            && runs.Any(r => r.InstanceId != skipped.InstanceId && r.StartedAt <= skipped.StartedAt && skipped.StartedAt <= r.FinishedAt));
        Assert.Equal(1, runs.Sum(r => r.ProcessedCount));
        Assert.True((await db.StoreAccounts.AsNoTracking().SingleAsync(a => a.Id == stale, Ct)).HasOrders);
    }

    internal static object Account(Guid id, bool active, bool hasOrders) => new { id, active, hasOrders };

    internal static async Task LoadAccountsAsync(HttpClient admin, params (Guid Id, bool Active, bool HasOrders)[] accounts) =>
        await admin.PostJsonAsync("/api/admin/store/accounts", accounts.Select(a => Account(a.Id, a.Active, a.HasOrders)).ToArray())
            .ExpectAsync(HttpStatusCode.Created);

    internal static async Task LoadOrdersAsync(HttpClient admin, params (Guid Seller, Guid Buyer, string Status, string ProductType)[] orders) =>
        await admin.PostJsonAsync("/api/admin/store/orders", orders.Select(o => new
        {
            id = Guid.NewGuid(),
            sellerAccount = o.Seller,
            buyerAccount = o.Buyer,
            status = o.Status,
            productType = o.ProductType,
        }).ToArray()).ExpectAsync(HttpStatusCode.Created);

    /// <summary>A trigger that notes every row written to store_accounts from now on, in <c>account_writes</c>.</summary>
    private static async Task RecordAccountWritesAsync(TallyApp app, string storage)
    {
        await using var db = app.Db();
        if (storage == "postgres")
        {
            await db.Database.ExecuteSqlRawAsync("""
                CREATE TABLE account_writes (id uuid NOT NULL);
                CREATE FUNCTION note_account_write() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN INSERT INTO account_writes VALUES (NEW.id); RETURN NEW; END $$;
                CREATE TRIGGER note_account_write AFTER UPDATE ON store_accounts FOR EACH ROW EXECUTE FUNCTION note_account_write();
                """, Ct);
        }
        else
        {
            await db.Database.ExecuteSqlRawAsync("""
                CREATE TABLE account_writes (id TEXT NOT NULL);
                CREATE TRIGGER note_account_write AFTER UPDATE ON store_accounts BEGIN INSERT INTO account_writes VALUES (NEW.id); END;
                """, Ct);
        }
    }

    internal static List<Guid> Ids(JsonElement array) => array.EnumerateArray().Select(e => e.GetGuid()).ToList();

    internal static List<Guid> Sorted(params Guid[] ids) => ids.Order().ToList();
}
