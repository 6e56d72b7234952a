using System.ComponentModel.DataAnnotations;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Tally.Data;
using Tally.Hosting;
using Tally.Jobs.Audit;

namespace Tally.Jobs.Queues;

/// <summary>
/// A dead letter as the console shows it: the record (state, and who settled it when) and, under
/// each registered <see cref="IDeadLetterReader.Property"/>, what that reader decoded from it (null
/// for a letter it does not read).
/// </summary>
public sealed record DeadLetterView(
    Guid Id, string Queue, string MessageId, string Body, int Attempts, string Reason, DateTime DeadLetteredAt, long Sequence,
    string State, DateTime? SettledAt, string? SettledBy)
{
    /// <summary>Each reader's decoding by its property name, written into the JSON beside the record's fields.</summary>
    [JsonExtensionData]
    public Dictionary<string, object?> Decoded { get; init; } = [];

    public static DeadLetterView Of(DeadLetter d, Dictionary<string, object?> decoded) => new(
        d.Id, d.Queue, d.MessageId, d.Body, d.Attempts, d.Reason, d.DeadLetteredAt, d.Sequence, d.State, d.SettledAt, d.SettledBy)
    { Decoded = decoded };
}

/// <summary>
/// What a feature can say about its own dead letters beyond their body (an allowance letter's
/// occurrence and schedule). The job runtime knows no feature, so a feature that can decode its
/// letters registers one of these, and the dead-letter API and console show the result under
/// <see cref="Property"/>.
/// </summary>
public interface IDeadLetterReader
{
    /// <summary>The JSON property the decoding appears under, on every letter (null where this reader has nothing).</summary>
    string Property { get; }

    /// <summary>The letters among <paramref name="letters"/> this reader decodes, by letter id, read in one go.</summary>
    Task<IReadOnlyDictionary<Guid, object>> DecodeAsync(TallyDb db, IReadOnlyList<DeadLetter> letters, CancellationToken ct);
}

/// <summary>
/// A bulk replay or delete: the filter (as the listing's), or <see cref="Ids"/> (at most
/// <see cref="DeadLetterEndpoints.MaxIds"/>), or both. <see cref="DryRun"/> only counts. A real call by
/// filter names <see cref="UpTo"/>, the sequence its dry run answered, so it acts on what was counted.
/// </summary>
public sealed record DeadLetterBulkRequest(
    string? Queue = null, string? Reason = null, string? MessageId = null, string? Text = null, List<Guid>? Ids = null, bool? DryRun = null, long? UpTo = null)
{
    public DeadLetterFilter Filter => new(Queue, Reason, MessageId, Text);
}

/// <summary>A dry run: how many dead letters match, and the highest sequence among them (0 when none) to act up to.</summary>
public sealed record DeadLetterPreview(long Matched, long UpTo);

public sealed record DeadLettersReplayed(long Replayed, long UpTo);

public sealed record DeadLettersDeleted(long Deleted, long UpTo);

/// <summary>
/// <c>/api/admin/dead-letters</c>: search the records (live dead letters by default), read one, and
/// replay or delete one, a selection or everything matching a filter after a dry-run count. Every
/// read walks an index newest first by sequence (the cursor: <c>before</c> is the last row's
/// sequence) and stops at the page; the text searches use trigram indexes on PostgreSQL.
/// </summary>
public static class DeadLetterEndpoints
{
    public const int MaxIds = 1000;
    private const int MaxPage = 1000;
    private const string All = "all";
    private static readonly string[] States = [.. DeadLetterStates.All, All];

    public static WebApplication MapDeadLetters(this WebApplication app)
    {
        var admin = app.MapAdmin("/api/admin", "Admin: dead letters");
        admin.MapGet("/dead-letters", ListAsync)
            .WithSummary("Search dead letters by queue, reason, message id and body text; newest first, `before` = the last row's sequence");
        admin.MapGet("/dead-letters/{id:guid}", ReadAsync)
            .WithSummary("One dead letter's record, in any state, an allowance letter decoded")
            .Refuses(404, "DEAD_LETTER.NOT_FOUND", NotFoundDetail);
        admin.MapPost("/dead-letters/{id:guid}/replay", ReplayAsync).ForOperators()
            .WithSummary("Send one dead letter back to its queue with fresh retries; its record stays, marked replayed by the caller")
            .Refuses(404, "DEAD_LETTER.NOT_FOUND", NotFoundDetail)
            .Refuses(409, "DEAD_LETTER.SETTLED", SettledDetail);
        admin.MapDelete("/dead-letters/{id:guid}", DeleteAsync).ForOperators()
            .WithSummary("Give up on one dead letter; its record stays, marked deleted by the caller")
            .Refuses(404, "DEAD_LETTER.NOT_FOUND", NotFoundDetail)
            .Refuses(409, "DEAD_LETTER.SETTLED", SettledDetail);
        admin.MapPost("/dead-letters/replay", ReplayMatchingAsync).ForOperators()
            .WithSummary("Replay the given ids or every dead letter matching a filter: `dryRun` counts and answers `upTo`; the real call, bounded by `upTo`, acts on what was counted");
        admin.MapPost("/dead-letters/delete", DeleteMatchingAsync).ForOperators()
            .WithSummary("Delete the given ids or every dead letter matching a filter, after a dry run as for replay");
        return app;
    }

    /// <summary>The listing: newest first; <paramref name="state"/> is dead unless given (or <c>all</c>).</summary>
    internal static async Task<Results<Ok<List<DeadLetterView>>, ValidationProblem>> ListAsync(
        TallyDb db, IEnumerable<IDeadLetterReader> readers, CancellationToken ct, string? queue = null, string? reason = null,
        string? messageId = null, string? text = null,
        [AllowedValues(DeadLetterStates.Dead, DeadLetterStates.Replayed, DeadLetterStates.Deleted, All)] string? state = null, long? before = null, int? limit = null)
    {
        var filter = new DeadLetterFilter(queue, reason, messageId, text);
        var errors = filter.Check(new FieldErrors())
            .Check(state is null || States.Contains(state), "state", $"must be one of {string.Join(", ", States)}")
            .Check(before is null or > 0, "before", "must be a positive sequence")
            .CheckLimit(limit, 100, MaxPage, out var take);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        return TypedResults.Ok(await FindAsync(db, readers, filter, state ?? DeadLetterStates.Dead, before, take, ct));
    }

    /// <summary>
    /// Dead letters matching <paramref name="filter"/> in <paramref name="state"/> (<c>all</c> for any),
    /// newest first, below the sequence <paramref name="before"/> when given: the listing, without its
    /// checks (callers pass checked values), decoded by <paramref name="readers"/>.
    /// </summary>
    public static async Task<List<DeadLetterView>> FindAsync(
        TallyDb db, IEnumerable<IDeadLetterReader> readers, DeadLetterFilter filter, string state, long? before, int take, CancellationToken ct)
    {
        var query = filter.Apply(db, db.DeadLetters.AsNoTracking());
        if (state != All)
        {
            query = query.Where(d => d.State == state);
        }
        if (before is { } b)
        {
            query = query.Where(d => d.Sequence < b);
        }
        var rows = await query.OrderByDescending(d => d.Sequence).Take(take).ToListAsync(ct);
        return await ViewsAsync(db, readers, rows, ct);
    }

    internal static async Task<Results<Ok<DeadLetterView>, ProblemHttpResult>> ReadAsync(
        Guid id, TallyDb db, IEnumerable<IDeadLetterReader> readers, CancellationToken ct) =>
        await FindOneAsync(db, readers, id, ct) is { } view
            ? TypedResults.Ok(view)
            : NotFound();

    /// <summary>One dead letter, in any state, or null.</summary>
    public static async Task<DeadLetterView?> FindOneAsync(TallyDb db, IEnumerable<IDeadLetterReader> readers, Guid id, CancellationToken ct)
    {
        var row = await db.DeadLetters.AsNoTracking().FirstOrDefaultAsync(d => d.Id == id, ct);
        return row is null ? null : (await ViewsAsync(db, readers, [row], ct))[0];
    }

    /// <summary>How many live dead letters <paramref name="selection"/> holds, and the highest sequence among them (0 when none).</summary>
    public static async Task<DeadLetterPreview> PreviewAsync(TallyDb db, DeadLetterSelection selection, CancellationToken ct)
    {
        var matching = selection.Apply(db, db.DeadLetters.AsNoTracking().Live());
        var upTo = await matching.MaxAsync(d => (long?)d.Sequence, ct) ?? 0;
        // Counted up to the highest sequence read: a letter arriving between the two reads is not counted.
        var matched = await matching.Where(d => d.Sequence <= upTo).LongCountAsync(ct);
        return new DeadLetterPreview(matched, upTo);
    }

    internal static async Task<Results<Accepted, ProblemHttpResult>> ReplayAsync(Guid id, HttpContext http, DeadLetterStore store, CancellationToken ct) =>
        await store.ReplayAsync(id, AuditLog.ActorOf(http.User), ct) switch
        {
            SettleOutcome.Settled => TypedResults.Accepted((string?)null),
            SettleOutcome.AlreadySettled => AlreadySettled(),
            _ => NotFound(),
        };

    internal static async Task<Results<NoContent, ProblemHttpResult>> DeleteAsync(Guid id, HttpContext http, DeadLetterStore store, CancellationToken ct) =>
        await store.DeleteAsync(id, AuditLog.ActorOf(http.User), ct) switch
        {
            SettleOutcome.Settled => TypedResults.NoContent(),
            SettleOutcome.AlreadySettled => AlreadySettled(),
            _ => NotFound(),
        };

    internal static Task<Results<Ok<DeadLetterPreview>, Ok<DeadLettersReplayed>, ValidationProblem>> ReplayMatchingAsync(
        DeadLetterBulkRequest request, HttpContext http, TallyDb db, DeadLetterStore store, CancellationToken ct) =>
        // The request's token: a replay stopped half-way has published and marked whole batches only,
        // and a new dry run counts what is left.
        SettleMatchingAsync(request, http, db, "replayed", (selection, actor) => store.ReplayAsync(selection, actor, ct),
            (count, upTo) => new DeadLettersReplayed(count, upTo), ct);

    internal static Task<Results<Ok<DeadLetterPreview>, Ok<DeadLettersDeleted>, ValidationProblem>> DeleteMatchingAsync(
        DeadLetterBulkRequest request, HttpContext http, TallyDb db, DeadLetterStore store, CancellationToken ct) =>
        SettleMatchingAsync(request, http, db, "deleted", (selection, actor) => store.DeleteAsync(selection, actor, ct),
            (count, upTo) => new DeadLettersDeleted(count, upTo), ct);

    /// <summary>A bulk replay or delete: checked, audited with its filter, a dry run's count, or the act bounded by <c>upTo</c>.</summary>
    private static async Task<Results<Ok<DeadLetterPreview>, Ok<TDone>, ValidationProblem>> SettleMatchingAsync<TDone>(
        DeadLetterBulkRequest request, HttpContext http, TallyDb db, string done, Func<DeadLetterSelection, string, Task<long>> settle,
        Func<long, long, TDone> answer, CancellationToken ct)
    {
        if (Check(request) is { Any: true } errors)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var selection = new DeadLetterSelection(request.Filter, request.Ids, request.UpTo);
        AuditLog.Target(http, selection.ToString());
        if (request.DryRun == true)
        {
            return TypedResults.Ok(await DryRunAsync(http, db, selection, ct));
        }
        selection = await BoundAsync(db, selection, ct);
        var count = await settle(selection, AuditLog.ActorOf(http.User));
        AuditLog.Detail(http, $"{done} {count} dead letter(s) up to sequence {selection.UpTo}");
        return TypedResults.Ok(answer(count, selection.UpTo!.Value));
    }

    private static FieldErrors Check(DeadLetterBulkRequest request) => request.Filter.Check(new FieldErrors())
        .Check(request.Ids is null || request.Ids.Count is >= 1 and <= MaxIds, "ids", $"must name between 1 and {MaxIds} ids")
        .Check(request.UpTo is null or >= 0, "upTo", "must not be negative")
        .Check(request.DryRun == true || request.UpTo is not null || request.Ids is not null, "upTo",
            "is required to act by filter: send the upTo of a dry run, so what is acted on is what was counted");

    private static async Task<DeadLetterPreview> DryRunAsync(HttpContext http, TallyDb db, DeadLetterSelection selection, CancellationToken ct)
    {
        var preview = await PreviewAsync(db, selection, ct);
        AuditLog.Detail(http, $"dry run: {preview.Matched} dead letter(s) up to sequence {preview.UpTo}");
        return preview;
    }

    /// <summary>
    /// A selection by ids alone is bounded by the highest sequence among them now, so it too leaves
    /// alone a letter that dies again while it runs.
    /// </summary>
    private static async Task<DeadLetterSelection> BoundAsync(TallyDb db, DeadLetterSelection selection, CancellationToken ct) =>
        selection.UpTo is null ? selection with { UpTo = (await PreviewAsync(db, selection, ct)).UpTo } : selection;

    private static async Task<List<DeadLetterView>> ViewsAsync(TallyDb db, IEnumerable<IDeadLetterReader> readers, List<DeadLetter> rows, CancellationToken ct)
    {
        var decoded = new List<(string Property, IReadOnlyDictionary<Guid, object> ById)>();
        foreach (var reader in readers)
        {
            decoded.Add((reader.Property, await reader.DecodeAsync(db, rows, ct)));
        }
        return rows.Select(d => DeadLetterView.Of(d, decoded.ToDictionary(r => r.Property, r => r.ById.GetValueOrDefault(d.Id)))).ToList();
    }

    private const string NotFoundDetail = "No such dead letter.";
    private const string SettledDetail = "This dead letter was already replayed or deleted; its record stays.";

    private static ProblemHttpResult NotFound() => Problems.NotFound("DEAD_LETTER.NOT_FOUND", NotFoundDetail);

    private static ProblemHttpResult AlreadySettled() => Problems.Conflict("DEAD_LETTER.SETTLED", SettledDetail);
}
