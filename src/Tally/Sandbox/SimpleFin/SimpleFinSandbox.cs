using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;
using Tally.Hosting;

namespace Tally.Sandbox.SimpleFin;

public sealed class SimpleFinSandboxSettings
{
    /// <summary>
    /// The URL this server is reached at, put into setup tokens and access URLs (and the one plain
    /// HTTP address Tally's own SimpleFIN client may call). Unset: the server's own bound address,
    /// never the Host header of a request.
    /// </summary>
    public string? PublicUrl { get; set; }

    /// <summary>Setup tokens (new sandbox users) the anonymous route hands out in any hour; past it, 429.</summary>
    public int MaxSetupTokensPerHour { get; set; } = 60;
}

/// <summary>
/// A SimpleFIN server for trying Tally without a bank, served over real HTTP under
/// <c>/sandbox/simplefin</c> when <c>Sandbox:Enabled</c> (on by default in Development):
/// <list type="bullet">
/// <item><c>POST /setup-token</c> <c>{scenario?, accounts?}</c> answers <c>{setupToken, username, scenarioToken}</c> for a new
/// sandbox user, at most <c>Sandbox:SimpleFin:MaxSetupTokensPerHour</c> in any hour;</item>
/// <item><c>POST /claim/{token}</c> answers the access URL once, then 403 (as the protocol says);</item>
/// <item><c>GET /accounts</c> with the access URL's basic auth answers an Account Set;</item>
/// <item><c>PUT /users/{username}/scenario</c> <c>{scenario}</c> with <c>Authorization: Bearer {scenarioToken}</c> changes how
/// that user's bank behaves from now on: only whoever created the user holds its scenario token.</item>
/// </list>
/// Every URL it hands out starts with <see cref="SandboxAddress"/>: configuration or the server's own
/// address, never a request's Host header (which anyone can write).
/// Scenarios: <c>ok</c>, <c>legacy</c> (protocol 1.0 shape: <c>errors</c> and <c>org</c>, no <c>errlist</c>),
/// <c>errlist-auth</c> (<c>con.auth</c>, no accounts), <c>errlist-partial</c> (<c>act.failed</c> for one
/// account), <c>payment-required</c> (402), <c>revoked</c> (403), <c>rate-limited</c> (429, Retry-After 120),
/// <c>unavailable</c> (500), <c>malformed</c> (not an Account Set). A user's scenario and account count
/// are part of its username, so the sandbox keeps no state beyond claimed tokens and scenario changes.
/// </summary>
public static class SimpleFinSandbox
{
    public const string BasePath = "/sandbox/simplefin";

    public static readonly IReadOnlySet<string> Scenarios = new HashSet<string>(StringComparer.Ordinal)
    {
        "ok", "legacy", "errlist-auth", "errlist-partial", "payment-required", "revoked", "rate-limited", "unavailable", "malformed",
    };

    public const int MaxAccounts = 20_000;

    public static WebApplicationBuilder AddSimpleFinSandbox(this WebApplicationBuilder builder)
    {
        if (!LocalUpstreams.Enabled(builder.Configuration, builder.Environment))
        {
            return builder;
        }
        SandboxSetup.AddSandboxOptions(builder.Services);
        builder.Services.AddSingleton<IValidateOptions<SandboxOptions>, ValidateSandbox>();
        builder.Services.AddSingleton<SandboxBank>();
        builder.Services.AddSingleton<SandboxAddress>();
        builder.Services.AddSingleton<SetupTokenWindow>();
        // Where it answers is announced to this process's clients once the server listens.
        LocalUpstreams.Serve(builder.Services, LocalUpstreams.SimpleFin, (services, _) =>
            services.GetRequiredService<SandboxAddress>().Root is { } root ? new LocalAddress(root, "") : null);
        return builder;
    }

    public static WebApplication MapSimpleFinSandbox(this WebApplication app)
    {
        if (!LocalUpstreams.Enabled(app.Configuration, app.Environment))
        {
            return app;
        }
        var sandbox = app.MapGroup(BasePath).WithTags("Sandbox: SimpleFIN").AllowAnonymous();
        sandbox.MapGet("/info", () => TypedResults.Ok(new { versions = new[] { "1.0" } })).WithSummary("Fake SimpleFIN bridge: the protocol versions it speaks");
        sandbox.MapGet("/create", () => TypedResults.Text($"POST {BasePath}/setup-token to get a SimpleFIN setup token for a new sandbox user.\n"))
            .WithSummary("Fake SimpleFIN bridge: how to get a setup token");
        sandbox.MapPost("/setup-token", CreateSetupToken).WithSummary("Fake SimpleFIN bridge: a setup token for a new sandbox user");
        sandbox.MapPost("/claim/{token}", Claim).WithSummary("Fake SimpleFIN bridge: claim a setup token for an access URL (once)");
        sandbox.MapGet("/accounts", Accounts).WithSummary("Fake SimpleFIN bridge: the accounts behind an access URL (Basic auth)");
        sandbox.MapPost("/generated-accounts", GeneratedAccounts)
            .WithSummary("Fake bank: the deterministic accounts for a seed, as the `sandbox` connection provider fetches them");
        sandbox.MapPut("/users/{username}/scenario", ChangeScenario).WithSummary("Fake SimpleFIN bridge: make a sandbox user's next answers fail or change, for demos and tests");
        return app;
    }

    public sealed record SetupTokenRequest(string? Scenario, int? Accounts);

    /// <param name="ScenarioToken">Lets its holder change this user's scenario; given only here, to whoever created the user.</param>
    public sealed record SetupTokenView(string SetupToken, string Username, string Scenario, int Accounts, string ScenarioToken);

    public sealed record ScenarioRequest(string? Scenario);

    /// <summary>The longest seed read: the <c>sandbox</c> provider's credentials are at most 4,096 characters of JSON.</summary>
    public const int MaxSeedLength = 4_096;

    public sealed record GeneratedAccountsRequest(string? Seed, int? Accounts);

    public sealed record GeneratedAccountsView(IReadOnlyList<SandboxAccount> Accounts);

    /// <summary>
    /// The same seed gives the same accounts, their balances moved once per <c>Sandbox:DriftPeriod</c>:
    /// what the <c>sandbox</c> connection provider shows for a connection (its seed is the credentials).
    /// </summary>
    internal static Results<Ok<GeneratedAccountsView>, ValidationProblem> GeneratedAccounts(
        GeneratedAccountsRequest body, IOptions<SandboxOptions> options, TimeProvider clock)
    {
        var errors = new FieldErrors()
            .Check(body.Seed is { Length: > 0 and <= MaxSeedLength }, "seed", $"is required: at most {MaxSeedLength} characters")
            .Check(body.Accounts is >= 0 and <= MaxAccounts, "accounts", $"must be between 0 and {MaxAccounts}");
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        var now = clock.GetUtcNow().UtcDateTime;
        return TypedResults.Ok(new GeneratedAccountsView(SandboxAccounts.For(body.Seed!, body.Accounts!.Value, now, options.Value.DriftPeriod).ToList()));
    }

    internal static IResult CreateSetupToken(HttpContext http, SandboxBank bank, SandboxAddress address, SetupTokenWindow window, SetupTokenRequest? body)
    {
        var scenario = body?.Scenario ?? "ok";
        var accounts = body?.Accounts ?? 3;
        var errors = new FieldErrors()
            .Check(Scenarios.Contains(scenario), "scenario", $"must be one of {string.Join(", ", Scenarios)}")
            .Check(accounts is >= 0 and <= MaxAccounts, "accounts", $"must be between 0 and {MaxAccounts}");
        if (errors.Any)
        {
            return Problems.Invalid(errors.ToDictionary());
        }
        if (address.Root is not { } root)
        {
            return NoAddress();
        }
        // Anyone may call this route: the window bounds how many users (and how much memory) it makes.
        if (window.TryTake() is { } wait)
        {
            var seconds = Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds));
            http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            return TypedResults.Problem(detail: "The sandbox hands out a limited number of setup tokens an hour; try later.", statusCode: StatusCodes.Status429TooManyRequests,
                extensions: new Dictionary<string, object?> { ["code"] = "SANDBOX.SETUP_TOKEN_LIMIT", ["retryAfterSeconds"] = seconds });
        }
        var username = $"{scenario}.{accounts}.{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        var claimUrl = $"{root}/claim/{bank.ClaimToken(username)}";
        var token = Convert.ToBase64String(Encoding.UTF8.GetBytes(claimUrl));
        return TypedResults.Ok(new SetupTokenView(token, username, scenario, accounts, bank.ScenarioToken(username)));
    }

    internal static IResult Claim(string token, SandboxBank bank, SandboxAddress address)
    {
        if (address.Root is not { } root)
        {
            return NoAddress();
        }
        if (bank.TryClaim(token) is not { } username)
        {
            return TypedResults.Text("This token does not exist or was already claimed.", statusCode: StatusCodes.Status403Forbidden);
        }
        var access = new UriBuilder(root) { UserName = username, Password = bank.Password(username) };
        return TypedResults.Text(access.Uri.ToString().TrimEnd('/'), "text/plain");
    }

    internal static IResult ChangeScenario(string username, HttpContext http, ScenarioRequest body, SandboxBank bank)
    {
        // Only the holder of this user's own scenario token: a stranger cannot turn someone else's bank bad.
        if (!bank.HoldsScenarioToken(username, http.Request.Headers.Authorization.ToString()))
        {
            return Problems.Of(StatusCodes.Status403Forbidden, "SANDBOX.FORBIDDEN",
                "Changing a sandbox user's scenario takes its scenario token (Authorization: Bearer ...), given when the user was made.");
        }
        if (body.Scenario is null || !Scenarios.Contains(body.Scenario))
        {
            return Problems.Invalid("scenario", $"must be one of {string.Join(", ", Scenarios)}");
        }
        bank.SetScenario(username, body.Scenario);
        return TypedResults.NoContent();
    }

    internal static IResult Accounts(HttpContext http, SandboxBank bank, SandboxAddress address, IOptions<SandboxOptions> options, TimeProvider clock)
    {
        if (bank.Authenticate(http.Request.Headers.Authorization.ToString()) is not { } user)
        {
            return TypedResults.Text("Authentication failed.", statusCode: StatusCodes.Status403Forbidden);
        }
        var balancesOnly = http.Request.Query["balances-only"] == "1";
        switch (user.Scenario)
        {
            case "payment-required":
                return TypedResults.Text("Payment required.", statusCode: StatusCodes.Status402PaymentRequired);
            case "revoked":
                return TypedResults.Text("Access has been revoked.", statusCode: StatusCodes.Status403Forbidden);
            case "rate-limited":
                http.Response.Headers.RetryAfter = "120";
                return TypedResults.Text("Too many requests.", statusCode: StatusCodes.Status429TooManyRequests);
            case "unavailable":
                return TypedResults.Text("The bridge is down for maintenance.", statusCode: StatusCodes.Status500InternalServerError);
            case "malformed":
                return TypedResults.Text("""{"accounts": "not a list", "errlist": 7}""", "application/json");
        }

        var now = clock.GetUtcNow().UtcDateTime;
        var connId = bank.ConnectionId(user.Username);
        var root = address.Root?.ToString();
        var accounts = SandboxAccounts.For(user.Username, user.Accounts, now, options.Value.DriftPeriod).ToList();
        var errlist = new JsonArray();
        if (user.Scenario == "errlist-auth")
        {
            errlist.Add(new JsonObject { ["code"] = "con.auth", ["msg"] = "Authentication required for Tally Sandbox Bank", ["conn_id"] = connId });
            accounts.Clear();
        }
        else if (user.Scenario == "errlist-partial" && accounts.Count > 0)
        {
            errlist.Add(new JsonObject { ["code"] = "act.failed", ["msg"] = "Failed to get account information. Try again later.", ["account_id"] = accounts[0].Id });
            accounts.RemoveAt(0);
        }

        var legacy = user.Scenario == "legacy";
        var set = new JsonObject();
        if (!legacy)
        {
            set["errlist"] = errlist;
            set["connections"] = new JsonArray(new JsonObject
            {
                ["conn_id"] = connId,
                ["name"] = "Tally Sandbox Bank",
                ["org_id"] = "ORG-tally-sandbox",
                ["org_url"] = "https://sandbox.tally.invalid",
                ["sfin_url"] = root,
            });
        }
        // Protocol 1.0 field, kept by servers during the migration to errlist.
        set["errors"] = new JsonArray(errlist.Select(e => (JsonNode?)JsonValue.Create(e!["msg"]!.GetValue<string>())).ToArray());
        var list = new JsonArray();
        foreach (var a in accounts)
        {
            var account = new JsonObject
            {
                ["id"] = a.Id,
                ["name"] = a.Name,
                ["currency"] = a.Currency,
                ["balance"] = SandboxAccounts.Amount(a.Balance),
                ["balance-date"] = new DateTimeOffset(a.BalanceDate).ToUnixTimeSeconds(),
            };
            if (a.AvailableBalance is { } available)
            {
                account["available-balance"] = SandboxAccounts.Amount(available);
            }
            if (legacy)
            {
                account["org"] = new JsonObject { ["domain"] = "sandbox.tally.invalid", ["name"] = "Tally Sandbox Bank", ["sfin-url"] = root };
            }
            else
            {
                account["conn_id"] = connId;
            }
            if (!balancesOnly)
            {
                account["transactions"] = new JsonArray();
            }
            list.Add(account);
        }
        set["accounts"] = list;
        return TypedResults.Text(set.ToJsonString(), "application/json");
    }

    private static ProblemHttpResult NoAddress() =>
        Problems.Of(StatusCodes.Status503ServiceUnavailable, "SANDBOX.NO_PUBLIC_URL",
            "The sandbox does not know the address it is served at: set Sandbox:SimpleFin:PublicUrl.");

    private sealed class ValidateSandbox : IValidateOptions<SandboxOptions>
    {
        public ValidateOptionsResult Validate(string? name, SandboxOptions options) =>
            options.Invalid() is { } problem ? ValidateOptionsResult.Fail(problem) : ValidateOptionsResult.Success;
    }

    /// <summary>The sandbox's memory: which tokens were claimed, and scenario changes. Everything else is derived from the username.</summary>
    public sealed class SandboxBank(IOptions<SandboxOptions> options)
    {
        private readonly ConcurrentDictionary<string, bool> _claimed = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, string> _scenarios = new(StringComparer.Ordinal);

        public sealed record BankUser(string Username, string Scenario, int Accounts);

        public string ClaimToken(string username) => $"{username}~{Mac("claim", username)}";

        public string Password(string username) => Mac("access", username);

        public string ConnectionId(string username) => $"CON-{Mac("connection", username)[..16]}";

        public string ScenarioToken(string username) => Mac("scenario", username);

        /// <summary>Whether <paramref name="authorization"/> is <c>Bearer</c> with this user's scenario token.</summary>
        public bool HoldsScenarioToken(string username, string authorization) =>
            authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            && Parse(username) is not null
            && FixedEquals(authorization["Bearer ".Length..].Trim(), ScenarioToken(username));

        /// <summary>The username of a valid, unclaimed token, marking it claimed; null otherwise.</summary>
        public string? TryClaim(string token)
        {
            var cut = token.LastIndexOf('~');
            if (cut <= 0 || !FixedEquals(token[(cut + 1)..], Mac("claim", token[..cut])) || Parse(token[..cut]) is null)
            {
                return null;
            }
            return _claimed.TryAdd(token, true) ? token[..cut] : null;
        }

        public BankUser? Authenticate(string authorization)
        {
            if (!authorization.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
            {
                return null;
            }
            string decoded;
            try
            {
                decoded = Encoding.UTF8.GetString(Convert.FromBase64String(authorization["Basic ".Length..].Trim()));
            }
            catch (FormatException)
            {
                return null;
            }
            var colon = decoded.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || !FixedEquals(decoded[(colon + 1)..], Password(decoded[..colon])))
            {
                return null;
            }
            var user = Parse(decoded[..colon]);
            return user is null ? null : user with { Scenario = _scenarios.GetValueOrDefault(user.Username, user.Scenario) };
        }

        public void SetScenario(string username, string scenario) => _scenarios[username] = scenario;

        private static BankUser? Parse(string username)
        {
            var parts = username.Split('.');
            return parts.Length == 3 && Scenarios.Contains(parts[0])
                && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var accounts) && accounts <= MaxAccounts
                ? new BankUser(username, parts[0], accounts)
                : null;
        }

        private string Mac(string purpose, string username) =>
            Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(options.Value.SimpleFinSecret), Encoding.UTF8.GetBytes($"{purpose}:{username}")))[..32];

        private static bool FixedEquals(string a, string b) =>
            CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));
    }
}
