using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.Ledger;
using Tally.Hosting;
using Tally.Jobs.Audit;
using Tally.Jobs.Lanes;
using Tally.Jobs.RateLimits;

namespace Tally.Features.BalanceSync;

public sealed record CreateCoreAccount(Guid? Id, Guid? UserId, string? AccountNumber, string? AccountType, bool? IsPrimary, string? Currency, bool? IsActive);

/// <summary>One core account's mirror. <see cref="Balance"/> is the core's available balance, as seed 001 answers it; <see cref="WorkingBalance"/> beside it.</summary>
public sealed record CoreAccountView(
    Guid Id, Guid UserId, string AccountNumber, string AccountType, bool IsPrimary, bool IsActive, string Currency,
    decimal? Balance, decimal? WorkingBalance, DateTime? AsOf, DateTime? LastSyncedAt, DateTime? LastAttemptAt, string? LastError)
{
    public static CoreAccountView Of(CoreAccount a) => new(
        a.Id, a.UserId, a.AccountNumber, a.AccountType, a.IsPrimary, a.IsActive, a.Currency,
        a.AvailableBalance, a.WorkingBalance, a.BankAsOf, a.LastSyncedAt, a.LastAttemptAt, a.LastError);
}

/// <summary>
/// A user's mirrored balances. <see cref="Balance"/> is the primary account's (else the first active
/// one's) available balance, as seed 001 answers it, with its <see cref="WorkingBalance"/> beside it; <see cref="AsOf"/> is the bank's as-of time of that balance. <see cref="Ok"/>: every active
/// account's last sync succeeded (after a login sync: just now). <see cref="Queued"/>: the login's sync
/// outlasted its wait and carries on in the background.
/// </summary>
public sealed record BalancesView(
    bool Ok, bool Queued, decimal? Balance, decimal? WorkingBalance, string? Currency, DateTime? AsOf, DateTime? LastSyncedAt,
    List<CoreAccountView> Accounts, string? Error)
{
    public static BalancesView Of(List<CoreAccount> accounts, bool ok, bool queued, string? error)
    {
        var main = accounts.Find(a => a.IsActive && a.IsPrimary) ?? accounts.Find(a => a.IsActive);
        return new BalancesView(ok, queued, main?.AvailableBalance, main?.WorkingBalance, main?.Currency, main?.BankAsOf, main?.LastSyncedAt,
            accounts.Select(CoreAccountView.Of).ToList(), error);
    }
}

public sealed record SyncRequested(Guid UserId, string Outcome, string Lane);

/// <summary>
/// The lanes (shared by every instance on PostgreSQL, this instance's own in memory), the call gate
/// of the instance that answers (<see cref="GateInstanceId"/>: each instance orders its own callers),
/// and where the fleet's limits are counted (<see cref="FleetStore"/>: <c>redis</c>, <c>postgres</c> or
/// <c>none</c>), with whether this instance is on its safe share because that store is out of reach.
/// </summary>
public sealed record LanesView(
    string Lanes, long Priority, long Background, long InFlight, long Retrying, string GateInstanceId, CoreCallGateState Gate, string FleetStore, bool OnShare)
{
    public static async Task<LanesView> ReadAsync(ILaneStore lanes, CoreCallGate gate, FleetLimiter fleet, TallyOptions tally, CancellationToken ct)
    {
        var counts = await lanes.CountAsync(ct);
        return new LanesView(lanes.Name, counts.Priority, counts.Background, counts.InFlight, counts.Retrying, tally.ResolvedInstanceId, gate.State(),
            fleet.Store, fleet.OnShare);
    }
}

public sealed record SyncStatus(string Service, long Priority, long Background, bool Processing, long InFlight, long Retrying, string Lanes);

/// <summary>
/// Balance sync's HTTP surface: the login sync (<c>POST /api/me/balances/sync</c>), the user's stored
/// balances, the status of the lanes (<c>GET /api/sync/status</c>, open like <c>/healthz</c>: counts
/// only), and the admin API that loads core accounts and queues a user.
/// </summary>
public static class BalanceSyncEndpoints
{
    private const string NotEligible = "BALANCE_SYNC.NOT_ELIGIBLE";
    private static readonly TimeSpan PendingPoll = TimeSpan.FromMilliseconds(100);
    private static readonly Meter Meter = new("Tally.BalanceSync.Login");
    private static readonly Histogram<double> LoginSeconds = Meter.CreateHistogram<double>("tally_balance_sync_login_seconds", "s", "Login balance sync answer time by outcome");

    public static WebApplication MapBalanceSync(this WebApplication app)
    {
        var admin = app.MapAdmin("/api/admin", "Admin: balance sync");
        admin.MapPost("/core-accounts", CreateCoreAccountAsync).ForAdmins()
            .WithSummary("Register a user's core-banking (T24) account to mirror; repeatable with the same values")
            .Refuses(404, "USER.NOT_FOUND", "the user does not exist")
            .Refuses(409, "CORE_ACCOUNT.ALREADY_EXISTS", "the user already has this account number, or the id is taken");
        admin.MapGet("/balance-sync/users/{userId:guid}", UserBalancesAsync)
            .WithSummary("A user's mirrored core accounts: balances, the bank's as-of time, last sync, last attempt and last error")
            .Refuses(404, "USER.NOT_FOUND", "no user has this id");
        admin.MapPost("/balance-sync/users/{userId:guid}", QueueUserAsync).ForOperators()
            .WithSummary("Queue a user's balance sync on the background lane")
            .Refuses(404, "USER.NOT_FOUND", "no user has this id")
            .Refuses(409, NotEligible, "only active MOBILE_BANKING users are synced with the core");
        admin.MapGet("/balance-sync/lanes", async (ILaneStore lanes, CoreCallGate gate, FleetLimiter fleet, IOptions<TallyOptions> tally, CancellationToken ct) =>
            TypedResults.Ok(await LanesView.ReadAsync(lanes, gate, fleet, tally.Value, ct)))
            .WithSummary("The sync lanes' depths and the answering instance's call gate");

        var me = app.MapGroup("/api/me/balances").WithTags("Me: balances").RequireAuthorization(Roles.User);
        me.MapGet("/", MyBalancesAsync).WithSummary("The caller's stored balances, without calling the core");
        me.MapPost("/sync", SyncMyBalancesAsync)
            .WithSummary("The login sync: fresh balances from the core within the login wait, else the stored ones with `queued: true`")
            .Refuses(404, "USER.NOT_FOUND", "the caller's user id is not known to Tally")
            .Refuses(409, NotEligible, "only active MOBILE_BANKING users are synced with the core");

        app.MapGet("/api/sync/status", StatusAsync).WithTags("Balance sync").AllowAnonymous()
            .WithSummary("The lanes' counts, as seed 001's status endpoint answered them (no ids, open like /healthz)");
        return app;
    }

    internal static async Task<Results<Created<CoreAccountView>, Ok<CoreAccountView>, ValidationProblem, ProblemHttpResult>> CreateCoreAccountAsync(
        CreateCoreAccount body, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var errors = new FieldErrors()
            .Check(body.UserId is not null && body.UserId != Guid.Empty, "userId", "is required")
            .Check(IsAccountNumber(body.AccountNumber), "accountNumber", "is required: 1 to 34 letters, digits, '-', '_' or '.'")
            .CheckText(body.AccountType, "accountType", 40)
            .Check(Currencies.IsKnown(body.Currency), "currency", "must be a supported ISO 4217 code such as USD")
            .Check(body.Id != Guid.Empty, "id", "must not be the empty uuid");
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        if (!await db.Users.AnyAsync(u => u.Id == body.UserId, ct))
        {
            return Problems.NotFound("USER.NOT_FOUND", "The user does not exist.");
        }
        var id = body.Id ?? Guid.CreateVersion7();
        var now = clock.GetUtcNow().UtcDateTime;
        // A repeated import of the same account is answered, not refused.
        var imported = await Imports.CreateOrMatchAsync(db,
            clashes: a => a.Id == id || (a.UserId == body.UserId && a.AccountNumber == body.AccountNumber),
            same: a => a.Id == id && a.UserId == body.UserId && a.AccountNumber == body.AccountNumber,
            create: () => new CoreAccount
            {
                Id = id,
                UserId = body.UserId!.Value,
                AccountNumber = body.AccountNumber!,
                AccountType = body.AccountType!.Trim().ToUpperInvariant(),
                IsPrimary = body.IsPrimary ?? false,
                IsActive = body.IsActive ?? true,
                Currency = body.Currency!,
                CreatedAt = now,
                UpdatedAt = now,
            },
            ct);
        return imported switch
        {
            Imported<CoreAccount>.Created(var account) => TypedResults.Created($"/api/admin/balance-sync/users/{account.UserId}", CoreAccountView.Of(account)),
            Imported<CoreAccount>.Matched(var account) => TypedResults.Ok(CoreAccountView.Of(account)),
            _ => Problems.Conflict("CORE_ACCOUNT.ALREADY_EXISTS", "The user already has this core account, or the id is taken."),
        };
    }

    internal static async Task<Results<Ok<BalancesView>, ProblemHttpResult>> UserBalancesAsync(Guid userId, TallyDb db, CancellationToken ct)
    {
        if (!await db.Users.AnyAsync(u => u.Id == userId, ct))
        {
            return Problems.NotFound("USER.NOT_FOUND", "No such user.");
        }
        return TypedResults.Ok(Stored(await AccountsOfAsync(db, userId, ct)));
    }

    internal static async Task<Results<Accepted<SyncRequested>, ProblemHttpResult>> QueueUserAsync(
        Guid userId, TallyDb db, ILaneStore lanes, CancellationToken ct)
    {
        var user = await db.Users.AsNoTracking().Where(u => u.Id == userId).Select(u => new { u.Context, u.IsActive }).FirstOrDefaultAsync(ct);
        if (user is null)
        {
            return Problems.NotFound("USER.NOT_FOUND", "No such user.");
        }
        if (!SyncUserBalances.IsEligible(user.Context, user.IsActive))
        {
            return Problems.Conflict(NotEligible, "Only active MOBILE_BANKING users are synced with the core.");
        }
        var queued = await lanes.EnqueueAsync(userId, Lane.Background, ct);
        return TypedResults.Accepted((string?)null, new SyncRequested(userId, OutcomeName(queued.Outcome), "background"));
    }

    internal static async Task<Ok<BalancesView>> MyBalancesAsync(HttpContext http, TallyDb db, CancellationToken ct) =>
        TypedResults.Ok(Stored(await AccountsOfAsync(db, http.User.UserId(), ct)));

    /// <summary>
    /// The login sync: queue the caller on the priority lane (promoting a waiting background entry, or
    /// joining a running one), then wait for it to settle, at most <see cref="BalanceSyncOptions.AuthSyncTimeout"/>.
    /// Settled in time: the fresh balances (<c>ok: true</c>), or the stored ones with the core's error.
    /// Too slow: the stored balances with <c>queued: true</c>; the entry moves to the background lane
    /// (if no worker has it yet) and the sync carries on.
    /// </summary>
    internal static async Task<Results<Ok<BalancesView>, Accepted<BalancesView>, ProblemHttpResult>> SyncMyBalancesAsync(
        HttpContext http, TallyDb db, ILoginQueue loginQueue, ILaneStore lanes, LaneWaiters waiters, LaneWorkers workers, CoreCallGate gate,
        IOptions<BalanceSyncOptions> options, TimeProvider clock, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var userId = http.User.UserId();
        var timeout = options.Value.AuthSyncTimeout;
        bool settled;
        Task<object?> settledHere;
        using (var awaited = waiters.Await(userId))
        {
            settledHere = awaited.Settled;
            var login = await loginQueue.QueueLoginAsync(userId, ct);
            if (login.User == LoginUser.Unknown)
            {
                return Problems.NotFound("USER.NOT_FOUND", "No such user.");
            }
            if (login.Enqueued is not { } queued)
            {
                return Problems.Conflict(NotEligible, "Only active MOBILE_BANKING users are synced with the core.");
            }
            // Joined a running sync here: its remaining calls go as priority, ahead of those already waiting.
            if (queued.Outcome != EnqueueOutcome.Queued && workers.Promote(userId))
            {
                gate.Reconsider();
            }
            settled = await WaitSettledAsync(lanes, awaited, userId, queued.Ticket, timeout - Stopwatch.GetElapsedTime(started), clock, ct);
            if (!settled)
            {
                // Nobody waits for it now: it must not hold the priority lane against the next login.
                await lanes.DemoteAsync(userId, queued.Ticket, CancellationToken.None);
            }
        }

        // Settled here: the sync handed over the accounts it committed; settled elsewhere (or not): read them.
        var accounts = settled && settledHere is { IsCompletedSuccessfully: true, Result: IReadOnlyList<CoreAccount> committed }
            ? [.. committed]
            : await AccountsOfAsync(db, userId, ct);
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        if (!settled)
        {
            LoginSeconds.Record(elapsed, new KeyValuePair<string, object?>("outcome", "queued"));
            return TypedResults.Accepted((string?)null, BalancesView.Of(accounts, ok: false, queued: true, error: null));
        }
        var answer = Stored(accounts);
        LoginSeconds.Record(elapsed, new KeyValuePair<string, object?>("outcome", answer.Ok ? "ok" : "failed"));
        return TypedResults.Ok(answer);
    }

    /// <summary>The stored balances; ok when every active account's last sync succeeded, else the first error.</summary>
    private static BalancesView Stored(List<CoreAccount> accounts)
    {
        var active = accounts.Where(a => a.IsActive).ToList();
        var ok = active.TrueForAll(a => a.LastError is null && a.LastSyncedAt is not null);
        return BalancesView.Of(accounts, ok, queued: false, error: ok ? null : active.Find(a => a.LastError is not null)?.LastError ?? "not synced yet");
    }

    /// <summary>
    /// True once the entry settled: told at once when it settles on this instance; when another
    /// instance settled it, looked up as soon as that instance says so (PostgreSQL's <c>NOTIFY</c>),
    /// and in any case within <see cref="PendingPoll"/>.
    /// </summary>
    private static async Task<bool> WaitSettledAsync(
        ILaneStore lanes, LaneWaiters.Registration awaited, Guid userId, Guid ticket, TimeSpan remaining, TimeProvider clock, CancellationToken ct)
    {
        var settled = awaited.Settled;
        var deadline = clock.GetTimestamp() + (long)(remaining.TotalSeconds * clock.TimestampFrequency);
        while (true)
        {
            var left = clock.GetElapsedTime(clock.GetTimestamp(), deadline);
            if (settled.IsCompleted)
            {
                return true;
            }
            if (left <= TimeSpan.Zero)
            {
                return false;
            }
            using (var stop = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                await Task.WhenAny(settled, awaited.Nudged, Task.Delay(left < PendingPoll ? left : PendingPoll, clock, stop.Token));
                await stop.CancelAsync();
            }
            ct.ThrowIfCancellationRequested();
            if (settled.IsCompleted || !await lanes.IsPendingAsync(userId, ticket, ct))
            {
                return true;
            }
        }
    }

    internal static async Task<Ok<SyncStatus>> StatusAsync(ILaneStore lanes, CancellationToken ct)
    {
        var counts = await lanes.CountAsync(ct);
        return TypedResults.Ok(new SyncStatus("balance-sync", counts.Priority, counts.Background, counts.InFlight > 0, counts.InFlight, counts.Retrying, lanes.Name));
    }

    private static Task<List<CoreAccount>> AccountsOfAsync(TallyDb db, Guid userId, CancellationToken ct) =>
        db.CoreAccounts.AsNoTracking().OfUser(userId).InAnswerOrder().ToListAsync(ct);

    private static bool IsAccountNumber(string? text) =>
        text is { Length: >= 1 and <= 34 } && text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    private static string OutcomeName(EnqueueOutcome outcome) => outcome switch
    {
        EnqueueOutcome.Queued => "QUEUED",
        EnqueueOutcome.AlreadyQueued => "ALREADY_QUEUED",
        EnqueueOutcome.Promoted => "PROMOTED",
        _ => "IN_FLIGHT",
    };
}
