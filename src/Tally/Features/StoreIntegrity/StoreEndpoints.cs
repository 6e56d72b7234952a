using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;
using Tally.Jobs.Scheduling;

namespace Tally.Features.StoreIntegrity;

public sealed record StoreAccountInput(Guid? Id, bool? Active, bool? HasOrders);

public sealed record StoreOrderInput(Guid? Id, Guid? SellerAccount, Guid? BuyerAccount, string? Status, string? ProductType, JsonElement? Metadata);

/// <summary>The answer to a bulk load: every id of the request in request order, and how many rows were new.</summary>
public sealed record StoreImportView(IReadOnlyList<Guid> Ids, int Created, int Unchanged);

public sealed record StoreAccountView(Guid Id, bool Active, bool HasOrders, DateTime CreatedAt)
{
    public static StoreAccountView Of(StoreAccount a) => new(a.Id, a.Active, a.HasOrders, a.CreatedAt);
}

public sealed record StoreOrderView(Guid Id, Guid SellerAccount, Guid BuyerAccount, string Status, string ProductType, JsonElement? Metadata, DateTime CreatedAt)
{
    public static StoreOrderView Of(StoreOrder o) => new(o.Id, o.SellerAccount, o.BuyerAccount, o.Status, o.ProductType,
        o.Metadata is null ? null : JsonSerializer.Deserialize<JsonElement>(o.Metadata), o.CreatedAt);
}

public sealed record RepairHasOrdersView(long RunId, IReadOnlyList<Guid> UpdatedIds);

/// <summary>One run of <c>store.sync-accounts</c> and the accounts it repaired, in id order (none for a run that found nothing, failed, or was skipped).</summary>
public sealed record StoreRepairView(long RunId, string Trigger, string Status, DateTime StartedAt, DateTime? FinishedAt, IReadOnlyList<Guid> AccountIds);

/// <summary>A run that repaired accounts, in the listing: how many; its ids are at <c>/api/admin/store/repairs/{runId}</c>.</summary>
public sealed record StoreRepairSummary(long RunId, string Trigger, DateTime RepairedAt, int AccountCount);

/// <summary>
/// Admin endpoints the host platform (and the demo) load store data through, and a way to run the
/// repair now. Loads are all-or-nothing and repeatable: ids may come from the client, and a row sent
/// again exactly as stored is answered, not refused.
/// </summary>
public static class StoreEndpoints
{
    public const int MaxBatch = 10_000;
    private const int MaxStatusLength = 64;
    private const int MaxProductTypeLength = 128;
    private const int MaxMetadataLength = 16_384;
    private const int MaxReportedItems = 50;
    private const int MaxRepairsPage = 500;

    /// <summary>Where the seed keeps an order's product type, inside its metadata (and where its pipeline matches it).</summary>
    public const string SeedProductTypeField = "product_type";

    public static WebApplication MapStoreIntegrity(this WebApplication app)
    {
        var admin = app.MapAdmin("/api/admin/store", "Admin: store");
        // A full batch of orders with their metadata is well above the API's usual body limit.
        var bulk = app.Services.GetRequiredService<IOptions<TallyOptions>>().Value.MaxBulkRequestBodyBytes;
        admin.MapPost("/accounts", ImportAccountsAsync).WithRequestBodyLimit(bulk).ForAdmins()
            .WithSummary("Load store accounts, all or nothing; a row sent again as stored is answered, not refused")
            .Refuses(409, "STORE.ACCOUNT_EXISTS", "an account exists with different values; nothing was loaded");
        admin.MapGet("/accounts/{id:guid}", GetAccountAsync)
            .WithSummary("Read a store account and its has_orders flag")
            .Refuses(404, "STORE.ACCOUNT_NOT_FOUND", "no store account has this id");
        admin.MapPost("/orders", ImportOrdersAsync).WithRequestBodyLimit(bulk).ForAdmins()
            .WithSummary("Load store orders (product type at metadata.product_type or productType), all or nothing")
            .Refuses(409, "STORE.ORDER_EXISTS", "an order exists with different values; nothing was loaded");
        admin.MapGet("/orders/{id:guid}", GetOrderAsync)
            .WithSummary("Read a store order")
            .Refuses(404, "STORE.ORDER_NOT_FOUND", "no store order has this id");
        admin.MapPost("/sync-accounts", RepairNowAsync).ForOperators()
            .Refuses(409, "STORE.SYNC_RUNNING", "another instance is running the repair now (its run id is in `runId`)")
            .Refuses(503, "STORE.SYNC_FAILED", "the run failed (recorded in cron_runs) or did not start");
        admin.MapGet("/repairs", ListRepairsAsync);
        admin.MapGet("/repairs/{runId:long}", GetRepairAsync).Refuses(404, "STORE.REPAIR_NOT_FOUND", "no run of the repair has this id");
        return app;
    }

    internal static async Task<Results<Created<StoreImportView>, Ok<StoreImportView>, ValidationProblem, ProblemHttpResult>> ImportAccountsAsync(
        List<StoreAccountInput?> body, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var errors = Check(body, "accounts", a => a.Id, (a, at) =>
        [
            (a.Active is not null, $"{at}.active", "is required (true or false)"),
            (a.HasOrders is not null, $"{at}.hasOrders", "is required (true or false)"),
        ], out var ids);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }

        var now = clock.GetUtcNow().UtcDateTime;
        var rows = body.Select((a, i) => new StoreAccount { Id = ids[i], Active = a!.Active!.Value, HasOrders = a.HasOrders!.Value, CreatedAt = now }).ToList();
        var result = await InsertNewAsync(db, rows, a => a.Id, (stored, sent) => stored.Active == sent.Active && stored.HasOrders == sent.HasOrders, ct);
        return Answer(result, ids, "STORE.ACCOUNT_EXISTS", "store accounts");
    }

    internal static async Task<Results<Created<StoreImportView>, Ok<StoreImportView>, ValidationProblem, ProblemHttpResult>> ImportOrdersAsync(
        List<StoreOrderInput?> body, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var errors = Check(body, "orders", o => o.Id, (o, at) =>
        [
            (o.SellerAccount is not null && o.SellerAccount != Guid.Empty, $"{at}.sellerAccount", "is required (a store account id)"),
            (o.BuyerAccount is not null && o.BuyerAccount != Guid.Empty, $"{at}.buyerAccount", "is required (a store account id)"),
            .. Text(o.Status, $"{at}.status", MaxStatusLength),
            .. ProductTypeRules(o, at),
            (o.Metadata is null || o.Metadata.Value.ValueKind is JsonValueKind.Object or JsonValueKind.Null, $"{at}.metadata", "must be a JSON object"),
            (o.Metadata is null || o.Metadata.Value.GetRawText().Length <= MaxMetadataLength, $"{at}.metadata", $"is at most {MaxMetadataLength} characters of JSON"),
            (o.Metadata is null || CanBeWrittenBack(o.Metadata.Value), $"{at}.metadata", "must hold valid Unicode text (no lone surrogate such as \\ud800)"),
        ], out var ids);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }

        var now = clock.GetUtcNow().UtcDateTime;
        var rows = body.Select((o, i) => new StoreOrder
        {
            Id = ids[i],
            SellerAccount = o!.SellerAccount!.Value,
            BuyerAccount = o.BuyerAccount!.Value,
            Status = o.Status!.Trim(),
            ProductType = ProductTypeOf(o)!,
            Metadata = o.Metadata is { ValueKind: JsonValueKind.Object } m ? m.GetRawText() : null,
            CreatedAt = now,
        }).ToList();

        // The accounts an order names need not be loaded yet: the order counts once they are.
        var result = await InsertNewAsync(db, rows, o => o.Id, SameOrder, ct);
        return Answer(result, ids, "STORE.ORDER_EXISTS", "store orders");
    }

    internal static async Task<Results<Ok<StoreAccountView>, ProblemHttpResult>> GetAccountAsync(Guid id, TallyDb db, CancellationToken ct)
    {
        var account = await db.StoreAccounts.AsNoTracking().FirstOrDefaultAsync(a => a.Id == id, ct);
        return account is null ? Problems.NotFound("STORE.ACCOUNT_NOT_FOUND", "No such store account.") : TypedResults.Ok(StoreAccountView.Of(account));
    }

    internal static async Task<Results<Ok<StoreOrderView>, ProblemHttpResult>> GetOrderAsync(Guid id, TallyDb db, CancellationToken ct)
    {
        var order = await db.StoreOrders.AsNoTracking().FirstOrDefaultAsync(o => o.Id == id, ct);
        return order is null ? Problems.NotFound("STORE.ORDER_NOT_FOUND", "No such store order.") : TypedResults.Ok(StoreOrderView.Of(order));
    }

    /// <summary>
    /// Runs <c>store.sync-accounts</c> now through the job runtime, so the run is locked against the
    /// scheduler and recorded in cron_runs like any other, and answers the ids it repaired.
    /// </summary>
    internal static async Task<Results<Ok<RepairHasOrdersView>, ProblemHttpResult>> RepairNowAsync(
        JobRegistry jobs, JobRunner runner, IHostApplicationLifetime lifetime)
    {
        var job = jobs.Find(RepairHasOrders.Name) ?? throw new InvalidOperationException($"{RepairHasOrders.Name} is not registered.");
        // The run belongs to the service, not to the HTTP request: a dropped connection does not cancel it.
        var outcome = await runner.RunAsync(job, JobRunner.ManualTrigger, null, lifetime.ApplicationStopping);
        return outcome switch
        {
            { Run: { Status: CronRunStatus.Success } run, Detail: RepairHasOrdersResult result } => TypedResults.Ok(new RepairHasOrdersView(run.Id, result.UpdatedIds)),
            { Run: { Status: CronRunStatus.SkippedLocked } run } => RunProblem(StatusCodes.Status409Conflict, "STORE.SYNC_RUNNING", run.Id,
                $"{RepairHasOrders.Name} is running elsewhere right now; try again shortly."),
            { Run: { } run } => RunProblem(StatusCodes.Status503ServiceUnavailable, "STORE.SYNC_FAILED", run.Id,
                $"The run failed and is recorded in cron_runs: {run.ErrorMessage}"),
            _ => RunProblem(StatusCodes.Status503ServiceUnavailable, "STORE.SYNC_FAILED", null, "The run did not start."),
        };
    }

    /// <summary>
    /// The runs that repaired accounts, newest first, <paramref name="limit"/> at a time (100 unless
    /// given); the next page is <c>before</c> the last run id of this one.
    /// </summary>
    internal static async Task<Results<Ok<List<StoreRepairSummary>>, ValidationProblem>> ListRepairsAsync(
        TallyDb db, CancellationToken ct, long? before = null, int? limit = null)
    {
        var take = limit ?? 100;
        var errors = new FieldErrors()
            .Check(take is >= 1 and <= MaxRepairsPage, "limit", $"must be between 1 and {MaxRepairsPage}")
            .Check(before is null or > 0, "before", "must be a run id (positive)");
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var repairs = db.StoreAccountRepairs.AsNoTracking();
        if (before is { } cursor)
        {
            repairs = repairs.Where(r => r.RunId < cursor);
        }
        // Newest first along the key (run_id, account_id): a backward index scan that stops after the page.
        var page = await repairs
            .GroupBy(r => r.RunId)
            .Select(g => new { RunId = g.Key, RepairedAt = g.Max(r => r.RepairedAt), Count = g.Count() })
            .OrderByDescending(r => r.RunId)
            .Take(take)
            .ToListAsync(ct);
        var runIds = page.Select(r => r.RunId).ToList();
        var triggers = await db.CronRuns.AsNoTracking().Where(c => runIds.Contains(c.Id)).ToDictionaryAsync(c => c.Id, c => c.Trigger, ct);
        return TypedResults.Ok(page.Select(r => new StoreRepairSummary(r.RunId, triggers[r.RunId], r.RepairedAt, r.Count)).ToList());
    }

    /// <summary>One run of <c>store.sync-accounts</c> with the ids it repaired; any other run id is not found.</summary>
    internal static async Task<Results<Ok<StoreRepairView>, ProblemHttpResult>> GetRepairAsync(long runId, TallyDb db, CancellationToken ct)
    {
        var run = await db.CronRuns.AsNoTracking().FirstOrDefaultAsync(r => r.Id == runId && r.JobName == RepairHasOrders.Name, ct);
        if (run is null)
        {
            return Problems.NotFound("STORE.REPAIR_NOT_FOUND", $"No run of {RepairHasOrders.Name} has this id.");
        }
        var ids = await db.StoreAccountRepairs.AsNoTracking().Where(r => r.RunId == runId).Select(r => r.AccountId).ToListAsync(ct);
        ids.Sort();
        return TypedResults.Ok(new StoreRepairView(run.Id, run.Trigger, run.Status, run.StartedAt, run.FinishedAt, ids));
    }

    private static ProblemHttpResult RunProblem(int status, string code, long? runId, string detail) =>
        TypedResults.Problem(detail: detail, statusCode: status, extensions: new Dictionary<string, object?> { ["code"] = code, ["runId"] = runId });

    /// <summary>
    /// Checks the batch and each item (reporting at most <see cref="MaxReportedItems"/> bad items),
    /// and settles every item's id: the client's, or a new one.
    /// </summary>
    private static FieldErrors Check<T>(List<T?> body, string noun, Func<T, Guid?> clientIdOf,
        Func<T, string, (bool Ok, string Field, string Message)[]> rules, out Guid[] ids)
        where T : class
    {
        var errors = new FieldErrors()
            .Check(body.Count > 0, "$", $"must hold at least one of the {noun}")
            .Check(body.Count <= MaxBatch, "$", $"must hold at most {MaxBatch} {noun} per request");
        ids = new Guid[body.Count];
        var seen = new Dictionary<Guid, int>();
        var bad = 0;
        for (var i = 0; i < body.Count && body.Count <= MaxBatch && bad < MaxReportedItems; i++)
        {
            var at = $"[{i}]";
            if (body[i] is not { } item)
            {
                errors.Add(at, "must be an object");
                bad++;
                continue;
            }
            var failed = rules(item, at).Where(r => !r.Ok).ToList();
            var clientId = clientIdOf(item);
            if (clientId == Guid.Empty)
            {
                failed.Add((false, $"{at}.id", "must not be the empty uuid"));
            }
            else if (clientId is { } id && !seen.TryAdd(id, i))
            {
                failed.Add((false, $"{at}.id", $"repeats the id of item {seen[id]}"));
            }
            foreach (var (_, field, message) in failed)
            {
                errors.Add(field, message);
            }
            bad += failed.Count > 0 ? 1 : 0;
            ids[i] = clientId ?? Guid.CreateVersion7();
        }
        return errors;
    }

    private abstract record InsertResult
    {
        public sealed record Inserted(int Created, int Unchanged) : InsertResult;

        public sealed record Conflict(IReadOnlyList<Guid> Ids) : InsertResult;
    }

    /// <summary>
    /// Inserts the rows whose ids are new, in one transaction; rows already stored must be the same
    /// as sent, else nothing is inserted. The primary key, not the look-up, is what keeps an id
    /// once: a concurrent import of the same ids loses the insert and looks again.
    /// </summary>
    private static async Task<InsertResult> InsertNewAsync<T>(TallyDb db, List<T> rows, Func<T, Guid> idOf, Func<T, T, bool> same, CancellationToken ct)
        where T : class
    {
        var ids = rows.Select(idOf).ToList();
        for (var attempt = 0; ; attempt++)
        {
            var stored = await db.Set<T>().AsNoTracking().Where(r => ids.Contains(EF.Property<Guid>(r, "Id"))).ToDictionaryAsync(idOf, ct);
            var conflicts = rows.Where(r => stored.TryGetValue(idOf(r), out var s) && !same(s, r)).Select(idOf).ToList();
            if (conflicts.Count > 0)
            {
                return new InsertResult.Conflict(conflicts);
            }
            var fresh = rows.Where(r => !stored.ContainsKey(idOf(r))).ToList();
            if (fresh.Count == 0)
            {
                return new InsertResult.Inserted(0, rows.Count);
            }
            db.Set<T>().AddRange(fresh);
            try
            {
                await db.SaveChangesAsync(ct);
                return new InsertResult.Inserted(fresh.Count, rows.Count - fresh.Count);
            }
            catch (DbUpdateException e) when (DbErrors.IsUniqueViolation(e))
            {
                db.ChangeTracker.Clear();
                if (attempt == 2)
                {
                    return new InsertResult.Conflict(fresh.Select(idOf).ToList());
                }
            }
        }
    }

    private static Results<Created<StoreImportView>, Ok<StoreImportView>, ValidationProblem, ProblemHttpResult> Answer(
        InsertResult result, Guid[] ids, string conflictCode, string noun) => result switch
        {
            InsertResult.Inserted { Created: 0 } same => TypedResults.Ok(new StoreImportView(ids, 0, same.Unchanged)),
            InsertResult.Inserted inserted => TypedResults.Created((string?)null, new StoreImportView(ids, inserted.Created, inserted.Unchanged)),
            InsertResult.Conflict conflict => Problems.Conflict(conflictCode,
                $"These {noun} exist with different values: {Describe(conflict.Ids)}. Nothing was loaded."),
            _ => throw new InvalidOperationException("Unknown insert result."),
        };

    private static bool SameOrder(StoreOrder stored, StoreOrder sent) =>
        stored.SellerAccount == sent.SellerAccount && stored.BuyerAccount == sent.BuyerAccount
        && stored.Status == sent.Status && stored.ProductType == sent.ProductType
        && (stored.Metadata, sent.Metadata) switch
        {
            (null, null) => true,
            (string a, string b) => JsonElement.DeepEquals(JsonSerializer.Deserialize<JsonElement>(a), JsonSerializer.Deserialize<JsonElement>(b)),
            _ => false,
        };

    /// <summary>
    /// An order's product type comes as <c>productType</c>, or in the seed's shape as
    /// <c>metadata.product_type</c> (a JSON null there counts as absent), or both when they agree
    /// (compared trimmed, as stored). Two that differ are refused rather than one picked: the repair
    /// would count the order under a type the sender did not mean in one of the two fields.
    /// </summary>
    private static IEnumerable<(bool Ok, string Field, string Message)> ProductTypeRules(StoreOrderInput o, string at)
    {
        var seedField = $"{at}.metadata.{SeedProductTypeField}";
        return SeedProductType(o) switch
        {
            { ValueKind: not JsonValueKind.String } => [(false, seedField, "must be a string (the product type)")],
            { } seed when o.ProductType is not null && seed.GetString()!.Trim() != o.ProductType.Trim() =>
                [(false, $"{at}.productType", $"differs from metadata.{SeedProductTypeField}: send the product type in one of them, or the same in both")],
            { } seed when o.ProductType is null => Text(seed.GetString(), seedField, MaxProductTypeLength),
            null when o.ProductType is null => [(false, $"{at}.productType", $"is required (or as metadata.{SeedProductTypeField}, in the seed's shape)")],
            _ => Text(o.ProductType, $"{at}.productType", MaxProductTypeLength),
        };
    }

    /// <summary>The seed's <c>metadata.product_type</c>, as sent; null when the metadata has none (or null).</summary>
    private static JsonElement? SeedProductType(StoreOrderInput o) =>
        o.Metadata is { ValueKind: JsonValueKind.Object } metadata
        && metadata.TryGetProperty(SeedProductTypeField, out var type) && type.ValueKind != JsonValueKind.Null
            ? type
            : null;

    /// <summary>The type the order is stored and counted under, once <see cref="ProductTypeRules"/> passed.</summary>
    private static string? ProductTypeOf(StoreOrderInput o) =>
        (o.ProductType ?? (SeedProductType(o) is { ValueKind: JsonValueKind.String } seed ? seed.GetString() : null))?.Trim();

    /// <summary>A required text rule as FieldErrors.CheckText states it (length, no control characters), as the item rules' tuples.</summary>
    private static IEnumerable<(bool Ok, string Field, string Message)> Text(string? value, string field, int maxLength) =>
        new FieldErrors().CheckText(value?.Trim(), field, maxLength).ToDictionary()
            .SelectMany(e => e.Value.Select(message => (false, e.Key, message)));

    /// <summary>
    /// JSON may escape a lone surrogate (<c>"\ud800"</c>), which no UTF-8 writer can write back: stored, the
    /// order could never be read or compared again. The writer is the only judge of that, hence the catch.
    /// </summary>
    private static bool CanBeWrittenBack(JsonElement metadata)
    {
        using var writer = new Utf8JsonWriter(Stream.Null);
        try
        {
            metadata.WriteTo(writer);
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static string Describe(IReadOnlyCollection<Guid> ids) =>
        string.Join(", ", ids.Take(5)) + (ids.Count > 5 ? $" and {ids.Count - 5} more" : "");
}
