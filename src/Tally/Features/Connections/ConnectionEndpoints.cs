using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.Connections.Providers;
using Tally.Hosting;

namespace Tally.Features.Connections;

public sealed record ConnectRequest(string? ProviderSlug, string? Name, string? SetupToken, JsonElement? Credentials);

public sealed record CredentialsRequest(string? SetupToken, JsonElement? Credentials);

public sealed record SyncRequest(bool? Force);

/// <summary>A connection as its owner sees it. Credentials are never part of any answer.</summary>
public sealed record ConnectionView(
    Guid Id, string ProviderSlug, string? Name, string Status, DateTime CreatedAt, DateTime? LastSyncAt, DateTime? LastAttemptAt,
    string? LastError, DateTime? ConsentExpiresAt, DateTime? RetryNotBefore)
{
    public static ConnectionView Of(ProviderConnection c) =>
        new(c.Id, c.ProviderSlug, c.Name, c.Status, c.CreatedAt, c.LastSyncAt, c.LastAttemptAt, c.LastError, c.ConsentExpiresAt, c.RetryNotBefore);
}

public sealed record ProviderAccountView(
    Guid Id, string ProviderAccountId, string Name, string? MaskedNumber, string Type, decimal Balance, decimal? AvailableBalance,
    string Currency, bool IsActive, DateTime? BalanceDate, DateTime LastSyncedAt, JsonElement? Metadata)
{
    public static ProviderAccountView Of(ProviderAccount a) => new(
        a.Id, a.ProviderAccountId, a.Name, a.MaskedNumber, a.AccountType, AccountUpsert.Normalize(a.Balance),
        a.AvailableBalance is { } available ? AccountUpsert.Normalize(available) : null, a.Currency, a.IsActive, a.BalanceDate, a.LastSyncedAt,
        a.ProviderMetadata is null ? null : JsonDocument.Parse(a.ProviderMetadata).RootElement.Clone());
}

public sealed record SyncRunView(
    Guid Id, string Trigger, bool Forced, string Status, string? Reason, int Created, int Updated, int Unchanged, int Errors,
    string? Message, DateTime StartedAt, DateTime? FinishedAt)
{
    public static SyncRunView Of(ConnectionSyncRun r) => new(
        r.Id, r.Trigger, r.Forced, r.Status, r.Reason, r.CreatedCount, r.UpdatedCount, r.UnchangedCount, r.ErrorCount, r.Message, r.StartedAt, r.FinishedAt);
}

/// <summary>The answer to a sync: the seed's counts.</summary>
public sealed record SyncResultView(Guid RunId, int Created, int Updated, int Unchanged, int Errors, string Message);

/// <summary>
/// A user's aggregator connections: <c>/api/connections</c>. Every route acts on the caller's own
/// connections only. Operators read them through <see cref="ConnectionAdminEndpoints"/>.
/// </summary>
public static class ConnectionEndpoints
{
    private const string NotFoundCode = "CONNECTION_NOT_FOUND";
    private const string NotFoundDetail = "No connection with this id.";
    private const int MaxNameLength = 100;

    public static WebApplication MapConnections(this WebApplication app)
    {
        var me = app.MapGroup("/api/connections").WithTags("Connections").RequireAuthorization(Roles.User);
        me.MapPost("/", CreateAsync)
            .WithSummary("Connect an aggregator (SimpleFIN: a setup token or an access URL); the credentials are stored encrypted")
            .Refuses(403, "USER.NOT_FOUND", "the caller's user id is not known to Tally")
            .Refuses(409, "PROVIDER_NOT_SUPPORTED", "the provider is not available on this server")
            .Refuses(409, "CONNECTION_LIMIT_REACHED", "the user has as many connections as Tally keeps for one user")
            .Refuses(502, "PROVIDER_ERROR", "the provider refused or failed the claim; `reason` says how");
        me.MapGet("/", ListAsync).WithSummary("The caller's connections (never their credentials)");
        me.MapGet("/{id:guid}", ReadAsync).WithSummary("One of the caller's connections").Refuses(404, NotFoundCode, NotFoundDetail);
        me.MapDelete("/{id:guid}", DeleteAsync).WithSummary("Delete a connection and forget its credentials").Refuses(404, NotFoundCode, NotFoundDetail);
        me.MapPut("/{id:guid}/credentials", ReplaceCredentialsAsync)
            .WithSummary("Replace a connection's credentials (after the provider rejected the old ones)")
            .Refuses(404, NotFoundCode, NotFoundDetail)
            .Refuses(409, "PROVIDER_NOT_SUPPORTED", "the provider is not available on this server")
            .Refuses(502, "PROVIDER_ERROR", "the provider refused or failed the claim; `reason` says how");
        me.MapPost("/{id:guid}/sync", SyncAsync)
            .WithSummary("Sync a connection's accounts now; `force` skips the recent-sync wait within the forced-sync limit")
            .Refuses(404, NotFoundCode, NotFoundDetail)
            .Refuses(409, "CONNECTION_NOT_ACTIVE", "the connection needs new credentials or was revoked")
            .Refuses(409, "SYNC_IN_PROGRESS", "another sync of this connection is running")
            .Refuses(409, "CREDENTIALS_INVALID", "the provider rejected the credentials")
            .Refuses(409, "CREDENTIALS_UNREADABLE", "the stored credentials cannot be decrypted with the current keys")
            .Refuses(409, "PROVIDER_NOT_SUPPORTED", "the provider is not available on this server")
            .Refuses(409, "ACCOUNT_LIMIT_EXCEEDED", "the provider answered more accounts than one connection may hold")
            .Refuses(429, "RECENTLY_SYNCED", "synced moments ago; `Retry-After` says when to try")
            .Refuses(429, "FORCED_SYNC_LIMIT_REACHED", "too many forced syncs in the window")
            .Refuses(429, "PROVIDER_QUOTA_EXHAUSTED", "the provider's daily call quota is used up")
            .Refuses(502, "PROVIDER_ERROR", "the provider failed; `reason` says how")
            .Refuses(503, "DATABASE_ERROR", "the database refused the sync's changes; what committed before stays");
        me.MapGet("/{id:guid}/accounts", AccountsAsync).WithSummary("The accounts a connection brought, with balances").Refuses(404, NotFoundCode, NotFoundDetail);
        me.MapGet("/{id:guid}/sync-runs", RunsAsync).WithSummary("A connection's sync runs, newest first, with their reasons").Refuses(404, NotFoundCode, NotFoundDetail);
        return app.MapConnectionAdmin();
    }

    internal static async Task<Results<Created<ConnectionView>, ValidationProblem, ProblemHttpResult>> CreateAsync(
        ConnectRequest body, HttpContext http, TallyDb db, AccountProviders providers, CredentialProtector protector, IOptions<ConnectionsOptions> options,
        TimeProvider clock, CancellationToken ct)
    {
        var errors = new FieldErrors()
            .Check(body.ProviderSlug is not null && providers.Find(body.ProviderSlug) is not null, "providerSlug", $"must be one of {string.Join(", ", providers.Slugs)}")
            .CheckText(body.Name, "name", MaxNameLength, required: false);
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var userId = http.User.UserId();
        if (!await db.Users.AnyAsync(u => u.Id == userId, ct))
        {
            return UnknownUser();
        }
        var max = options.Value.MaxConnectionsPerUser;
        // Checked before the provider is called too, so a refusal does not spend the user's setup token.
        if (await db.ProviderConnections.OwnedBy(userId).CountAsync(ct) >= max)
        {
            return LimitReached(max);
        }
        var connected = await providers.Find(body.ProviderSlug!)!.ConnectAsync(new ConnectInput(body.SetupToken, body.Credentials), ct);
        switch (connected)
        {
            case ConnectResult.Rejected rejected:
                return Problems.Invalid(rejected.Field, rejected.Message);
            case ConnectResult.Failed failed:
                return ProviderProblem(failed.Failure);
        }
        var ok = (ConnectResult.Connected)connected;
        var now = clock.GetUtcNow().UtcDateTime;
        var connection = new ProviderConnection
        {
            Id = Guid.CreateVersion7(),
            UserId = userId,
            ProviderSlug = body.ProviderSlug!,
            Name = body.Name,
            Status = ConnectionStatus.Active,
            CredentialsEncrypted = protector.Protect(ok.Secret),
            ConsentExpiresAt = ok.ConsentExpiresAt,
            CreatedAt = now,
            UpdatedAt = now,
        };
        // The guarantee: the count and the insert in one transaction that holds the user's row
        // (PostgreSQL) or the database's one write lock (SQLite), so concurrent creates cannot both
        // take the last place.
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await db.LockUserAsync(userId, ct);
        if (await db.ProviderConnections.OwnedBy(userId).CountAsync(ct) >= max)
        {
            return LimitReached(max);
        }
        db.ProviderConnections.Add(connection);
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        return TypedResults.Created($"/api/connections/{connection.Id}", ConnectionView.Of(connection));
    }

    internal static async Task<Ok<List<ConnectionView>>> ListAsync(HttpContext http, TallyDb db, CancellationToken ct)
    {
        var connections = await db.ProviderConnections.AsNoTracking().OwnedBy(http.User.UserId()).OrderBy(c => c.CreatedAt).ToListAsync(ct);
        return TypedResults.Ok(connections.Select(ConnectionView.Of).ToList());
    }

    internal static async Task<Results<Ok<ConnectionView>, ProblemHttpResult>> ReadAsync(Guid id, HttpContext http, TallyDb db, CancellationToken ct) =>
        await FindAsync(db, http, id, ct) is { } c ? TypedResults.Ok(ConnectionView.Of(c)) : Missing();

    internal static async Task<Results<NoContent, ProblemHttpResult>> DeleteAsync(Guid id, HttpContext http, TallyDb db, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        // Kept for its history, but the secret goes: a deleted connection can never be used again.
        var deleted = await db.ProviderConnections.OwnedBy(http.User.UserId()).Where(c => c.Id == id)
            .ExecuteUpdateAsync(s => s
                .SetProperty(c => c.DeletedAt, now)
                .SetProperty(c => c.Status, ConnectionStatus.Disconnected)
                .SetProperty(c => c.CredentialsEncrypted, (string?)null)
                .SetProperty(c => c.UpdatedAt, now), ct);
        return deleted == 1 ? TypedResults.NoContent() : Missing();
    }

    /// <summary>New credentials for a connection (a new SimpleFIN setup token after access was revoked): it becomes active again.</summary>
    internal static async Task<Results<Ok<ConnectionView>, ValidationProblem, ProblemHttpResult>> ReplaceCredentialsAsync(
        Guid id, CredentialsRequest body, HttpContext http, TallyDb db, AccountProviders providers, CredentialProtector protector, TimeProvider clock, CancellationToken ct)
    {
        var connection = await FindAsync(db, http, id, ct, tracked: true);
        if (connection is null)
        {
            return Missing();
        }
        if (providers.Find(connection.ProviderSlug) is not { } provider)
        {
            return Problems.Conflict("PROVIDER_NOT_SUPPORTED", $"Provider '{connection.ProviderSlug}' is not available on this server.");
        }
        var connected = await provider.ConnectAsync(new ConnectInput(body.SetupToken, body.Credentials), ct);
        switch (connected)
        {
            case ConnectResult.Rejected rejected:
                return Problems.Invalid(rejected.Field, rejected.Message);
            case ConnectResult.Failed failed:
                return ProviderProblem(failed.Failure);
        }
        var ok = (ConnectResult.Connected)connected;
        connection.CredentialsEncrypted = protector.Protect(ok.Secret);
        connection.ConsentExpiresAt = ok.ConsentExpiresAt;
        connection.Status = ConnectionStatus.Active;
        connection.LastError = null;
        connection.RetryNotBefore = null;
        connection.UpdatedAt = clock.GetUtcNow().UtcDateTime;
        await db.SaveChangesAsync(ct);
        return TypedResults.Ok(ConnectionView.Of(connection));
    }

    internal static async Task<Results<Ok<SyncResultView>, ProblemHttpResult>> SyncAsync(
        Guid id, HttpContext http, SyncConnection sync, IHostApplicationLifetime lifetime, SyncRequest? body)
    {
        // The sync belongs to the service, not to the request: a dropped connection does not cut it in half.
        var outcome = await sync.HandleAsync(new SyncCommand(id, http.User.UserId(), body?.Force ?? false, SyncTriggers.Api), lifetime.ApplicationStopping);
        return outcome switch
        {
            SyncOutcome.Synced s => TypedResults.Ok(new SyncResultView(s.RunId, s.Created, s.Updated, s.Unchanged, s.Errors, s.Message)),
            SyncOutcome.Failed f => SyncProblem(f.Failure, http.Response),
            _ => throw new InvalidOperationException($"Unknown sync outcome {outcome.GetType().Name}"),
        };
    }

    internal static async Task<Results<Ok<List<ProviderAccountView>>, ValidationProblem, ProblemHttpResult>> AccountsAsync(
        Guid id, HttpContext http, TallyDb db, CancellationToken ct, int? limit = null, Guid? after = null)
    {
        var take = limit ?? 500;
        if (take is < 1 or > 5_000)
        {
            return Problems.Invalid("limit", "must be between 1 and 5000");
        }
        if (await FindAsync(db, http, id, ct) is null)
        {
            return Missing();
        }
        var query = db.ProviderAccounts.AsNoTracking().Where(a => a.ConnectionId == id);
        if (after is { } cursor)
        {
            query = query.Where(a => a.Id.CompareTo(cursor) > 0);
        }
        var accounts = await query.OrderBy(a => a.Id).Take(take).ToListAsync(ct);
        return TypedResults.Ok(accounts.Select(ProviderAccountView.Of).ToList());
    }

    internal static async Task<Results<Ok<List<SyncRunView>>, ValidationProblem, ProblemHttpResult>> RunsAsync(
        Guid id, HttpContext http, TallyDb db, CancellationToken ct, int? limit = null)
    {
        var take = limit ?? 50;
        if (take is < 1 or > 500)
        {
            return Problems.Invalid("limit", "must be between 1 and 500");
        }
        if (await FindAsync(db, http, id, ct) is null)
        {
            return Missing();
        }
        var runs = await db.ConnectionSyncRuns.AsNoTracking().Where(r => r.ConnectionId == id)
            .OrderByDescending(r => r.StartedAt).ThenByDescending(r => r.Id).Take(take).ToListAsync(ct);
        return TypedResults.Ok(runs.Select(SyncRunView.Of).ToList());
    }

    /// <summary>How each sync failure answers over HTTP (the API reference in the README). Not found and not yours answer the same.</summary>
    internal static ProblemHttpResult SyncProblem(SyncFailure failure, HttpResponse response)
    {
        if (failure.RetryAfter is { } wait)
        {
            response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        }
        (int Status, string Code) problem = failure.Reason switch
        {
            SyncFailureReasons.ConnectionNotFound or SyncFailureReasons.NotOwnedByUser => (404, NotFoundCode),
            SyncFailureReasons.ConnectionNotActive => (409, "CONNECTION_NOT_ACTIVE"),
            SyncFailureReasons.RecentlySynced => (429, "RECENTLY_SYNCED"),
            SyncFailureReasons.ForcedSyncLimit => (429, "FORCED_SYNC_LIMIT_REACHED"),
            SyncFailureReasons.QuotaExhausted => (429, "PROVIDER_QUOTA_EXHAUSTED"),
            SyncFailureReasons.SyncInProgress => (409, "SYNC_IN_PROGRESS"),
            SyncFailureReasons.CredentialsInvalid => (409, "CREDENTIALS_INVALID"),
            SyncFailureReasons.CredentialsDecryptionFailed => (409, "CREDENTIALS_UNREADABLE"),
            SyncFailureReasons.ProviderNotSupported => (409, "PROVIDER_NOT_SUPPORTED"),
            SyncFailureReasons.TooManyAccounts => (409, "ACCOUNT_LIMIT_EXCEEDED"),
            SyncFailureReasons.DatabaseError => (503, "DATABASE_ERROR"),
            _ => (502, "PROVIDER_ERROR"),
        };
        var extensions = new Dictionary<string, object?> { ["code"] = problem.Code };
        if (problem.Status == 502)
        {
            extensions["reason"] = failure.Reason;
        }
        if (failure.RetryAfter is { } after)
        {
            extensions["retryAfterSeconds"] = Math.Max(1, (int)Math.Ceiling(after.TotalSeconds));
        }
        var detail = problem.Status == 404 ? NotFoundDetail : failure.Detail;
        return TypedResults.Problem(detail: detail, statusCode: problem.Status, extensions: extensions);
    }

    private static ProblemHttpResult ProviderProblem(ProviderFailure failure) =>
        TypedResults.Problem(detail: failure.Detail, statusCode: StatusCodes.Status502BadGateway,
            extensions: new Dictionary<string, object?> { ["code"] = "PROVIDER_ERROR", ["reason"] = failure.Reason });

    private static async Task<ProviderConnection?> FindAsync(TallyDb db, HttpContext http, Guid id, CancellationToken ct, bool tracked = false)
    {
        var query = db.ProviderConnections.OwnedBy(http.User.UserId()).Where(c => c.Id == id);
        return await (tracked ? query : query.AsNoTracking()).FirstOrDefaultAsync(ct);
    }

    private static ProblemHttpResult Missing() => Problems.NotFound(NotFoundCode, NotFoundDetail);

    private static ProblemHttpResult LimitReached(int max) =>
        Problems.Conflict("CONNECTION_LIMIT_REACHED", $"You have {max} connections, the most Tally keeps for one user: delete one first.");

    private static ProblemHttpResult UnknownUser() =>
        Problems.Of(StatusCodes.Status403Forbidden, "USER.NOT_FOUND", "Your user id is not known to Tally; an administrator creates users first.");
}
