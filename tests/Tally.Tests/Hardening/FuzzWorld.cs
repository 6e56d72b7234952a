using System.Net;
using System.Text;
using System.Text.Json;
using Tally.Tests.Harness;

namespace Tally.Tests.Hardening;

/// <summary>
/// A small valid world loaded through the API before the fuzz: a guardian with a funded ledger
/// account, a linked junior with an allowance (whose schedule id fills the admin's <c>{scheduleId}</c>),
/// a synced sandbox connection, a core-bank account, store accounts with an order (repaired once), a
/// SimpleFIN sandbox user, and a second user who owns things the guardian must not reach. Its ids
/// fill path parameters and id fields (real, and foreign to the caller), and the bodies it sent are
/// the valid bases the fuzzer mutates one field at a time.
/// </summary>
public sealed class FuzzWorld
{
    // Ids and names by what they name: a path segment ("ledger/accounts", "connections") or a field ("juniorId").
    private readonly Dictionary<string, List<string>> _named = new(StringComparer.OrdinalIgnoreCase);
    private readonly Dictionary<string, string> _examples = new(StringComparer.Ordinal);
    private readonly List<string> _ids = [];

    private FuzzWorld()
    {
    }

    public Guid GuardianId { get; private set; }

    public Guid JuniorId { get; private set; }

    /// <summary>Every id the world created, of every kind: the "foreign" values for any id field.</summary>
    public IReadOnlyList<string> AllIds => _ids;

    public static async Task<FuzzWorld> SeedAsync(TallyApp app)
    {
        var world = new FuzzWorld();
        var admin = app.Admin();
        Guid guardian = Guid.NewGuid(), junior = Guid.NewGuid(), other = Guid.NewGuid();
        world.GuardianId = guardian;
        world.JuniorId = junior;
        await world.CallAsync(admin, "POST", "/api/admin/users", new { id = guardian, username = $"fuzz-guardian-{guardian:N}", context = "MOBILE_BANKING", customerNumber = "C-1001", isActive = true }, HttpStatusCode.Created);
        await world.CallAsync(admin, "POST", "/api/admin/users", new { id = junior, username = $"fuzz-junior-{junior:N}", context = "WALLET", isActive = true }, HttpStatusCode.Created);
        await world.CallAsync(admin, "POST", "/api/admin/users", new { id = other, username = $"fuzz-other-{other:N}", context = "MOBILE_BANKING", isActive = true }, HttpStatusCode.Created);
        world.Name(["users", "userId"], guardian, junior, other);
        world.Name(["guardians", "guardianId"], guardian);
        world.Name(["juniors", "juniorId", "allowances"], junior);
        await world.CallAsync(admin, "PUT", "/api/admin/guardians/{guardianId}/juniors/{juniorId}", null, HttpStatusCode.NoContent, ("guardianId", guardian), ("juniorId", junior));

        Guid guardianAccount = Guid.NewGuid(), juniorAccount = Guid.NewGuid(), otherAccount = Guid.NewGuid();
        await world.CallAsync(admin, "POST", "/api/admin/ledger/accounts", new { id = guardianAccount, ownerId = guardian, currency = "USD" }, HttpStatusCode.Created);
        await world.CallAsync(admin, "POST", "/api/admin/ledger/accounts", new { id = juniorAccount, ownerId = junior, currency = "USD" }, HttpStatusCode.Created);
        await world.CallAsync(admin, "POST", "/api/admin/ledger/accounts", new { id = otherAccount, ownerId = other, currency = "USD" }, HttpStatusCode.Created);
        world.Name(["ledger/accounts", "accountId"], guardianAccount, juniorAccount, otherAccount);
        var otherDeposit = await world.CallAsync(admin, "POST", "/api/admin/ledger/deposits", new { accountId = otherAccount, amount = 50.00m, idempotencyKey = "fuzz-seed-other" }, HttpStatusCode.Created);
        var guardianDeposit = await world.CallAsync(admin, "POST", "/api/admin/ledger/deposits", new { accountId = guardianAccount, amount = 1000.00m, idempotencyKey = "fuzz-seed-guardian" }, HttpStatusCode.Created);
        world.Name(["ledger/transfers"], guardianDeposit.GetProperty("id").GetGuid(), otherDeposit.GetProperty("id").GetGuid());

        var asGuardian = app.AsGuardian(guardian);
        var startAt = DateTime.UtcNow.Date.AddDays(-3).AddHours(8).ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);
        var schedule = await world.CallAsync(asGuardian, "POST", "/api/guardians/me/allowances/{juniorId}",
            new { amount = 5.00m, currency = "USD", frequency = "WEEKLY", status = "ON", startAt, timeZone = "Europe/Paris", interval = 1, byDay = new[] { "MO", "FR" } },
            HttpStatusCode.Created, ("juniorId", junior));
        world.Name(["scheduleId"], schedule.GetProperty("id").GetGuid());

        var connection = await world.CallAsync(asGuardian, "POST", "/api/connections",
            new { providerSlug = "sandbox", name = "Fuzz bank", credentials = new { accounts = 2 } }, HttpStatusCode.Created);
        var connectionId = connection.GetProperty("id").GetGuid();
        await world.CallAsync(asGuardian, "POST", "/api/connections/{id}/sync", new { force = true }, HttpStatusCode.OK, ("id", connectionId));
        var foreign = await world.CallAsync(app.AsUser(other), "POST", "/api/connections",
            new { providerSlug = "sandbox", name = "Someone else's bank", credentials = new { accounts = 1 } }, HttpStatusCode.Created);
        world.Name(["connections"], connectionId, foreign.GetProperty("id").GetGuid());

        var coreAccount = Guid.NewGuid();
        await world.CallAsync(admin, "POST", "/api/admin/core-accounts",
            new { id = coreAccount, userId = guardian, accountNumber = "FZ0001", accountType = "CURRENT", isPrimary = true, currency = "USD", isActive = true },
            HttpStatusCode.Created);
        world.Name(["core-accounts"], coreAccount);
        world.Name(["accountId", "accountNumber"], "FZ0001");

        Guid seller = Guid.NewGuid(), buyer = Guid.NewGuid(), order = Guid.NewGuid();
        await world.CallAsync(admin, "POST", "/api/admin/store/accounts",
            new[] { new { id = seller, active = true, hasOrders = false }, new { id = buyer, active = true, hasOrders = false } }, HttpStatusCode.Created);
        world.Name(["store/accounts", "sellerAccount"], seller, buyer);
        world.Name(["buyerAccount"], buyer, seller);
        await world.CallAsync(admin, "POST", "/api/admin/store/orders",
            new[] { new { id = order, sellerAccount = seller, buyerAccount = buyer, status = "active", productType = "managed_subscription", metadata = new { plan = "gold" } } },
            HttpStatusCode.Created);
        world.Name(["store/orders"], order);
        // A manual repair of the two: its run id is the one /api/admin/store/repairs/{runId} serves.
        var repair = await world.CallAsync(admin, "POST", "/api/admin/store/sync-accounts", null, HttpStatusCode.OK);
        world.Name(["runId"], repair.GetProperty("runId").GetInt64());

        var jobs = await world.CallAsync(admin, "GET", "/api/admin/jobs", null, HttpStatusCode.OK);
        world.Name(["jobs", "name"], [.. jobs.EnumerateArray().Select(j => (object)j.GetProperty("name").GetString()!)]);

        var sandboxUser = await world.CallAsync(app.CreateClient(), "POST", "/sandbox/simplefin/setup-token", new { scenario = "ok", accounts = 2 }, HttpStatusCode.OK);
        var claimUrl = Encoding.UTF8.GetString(Convert.FromBase64String(sandboxUser.GetProperty("setupToken").GetString()!));
        var username = sandboxUser.GetProperty("username").GetString()!;
        world.Name(["username"], username);
        world.Name(["token", "claim"], claimUrl.Split('/')[^1]);
        // Only the user's own scenario token may change its scenario.
        var owner = app.CreateClient();
        owner.DefaultRequestHeaders.Authorization = new("Bearer", sandboxUser.GetProperty("scenarioToken").GetString());
        await world.CallAsync(owner, "PUT", "/sandbox/simplefin/users/{username}/scenario", new { scenario = "ok" }, HttpStatusCode.NoContent, ("username", username));
        return world;
    }

    /// <summary>
    /// The real value for a path parameter: named by the parameter itself (<c>juniorId</c>), or for a
    /// bare <c>{id}</c> by the segments before it (<c>/api/admin/ledger/accounts/{id}</c>).
    /// </summary>
    public string? ValueFor(string name, string pathTemplate, bool uuid) => Candidates(name, pathTemplate).FirstOrDefault(v => IsUuid(v) == uuid);

    /// <summary>Every real value a parameter could take: the ones it names first, then every other id of the world.</summary>
    public IReadOnlyList<string> RealValuesFor(string name, string pathTemplate) => [.. Candidates(name, pathTemplate).Concat(_ids).Distinct(StringComparer.Ordinal)];

    /// <summary>
    /// The valid body the world sent for this operation, or for another operation whose body has the
    /// same schema (a PATCH reuses its POST's body); null when the world never sent one.
    /// </summary>
    public string? ExampleFor(ApiOperation operation, IReadOnlyList<ApiOperation> all)
    {
        if (_examples.TryGetValue(operation.ToString(), out var own))
        {
            return own;
        }
        var component = ComponentOf(operation.Body);
        return component is null ? null : all
            .Where(o => o != operation && ComponentOf(o.Body) == component && o.Body?.Kind == operation.Body?.Kind)
            .Select(o => _examples.GetValueOrDefault(o.ToString()))
            .FirstOrDefault(e => e is not null);
    }

    private static string? ComponentOf(FieldSchema? body) => body?.Component ?? body?.Items?.Component;

    private IEnumerable<string> Candidates(string name, string pathTemplate)
    {
        var keys = new List<string>();
        if (!name.Equals("id", StringComparison.OrdinalIgnoreCase))
        {
            keys.Add(name);
        }
        var at = pathTemplate.IndexOf("{" + name + "}", StringComparison.Ordinal);
        var before = (at < 0 ? "" : pathTemplate[..at]).Split('/', StringSplitOptions.RemoveEmptyEntries).Where(s => !s.StartsWith('{')).ToList();
        if (before.Count >= 2)
        {
            keys.Add($"{before[^2]}/{before[^1]}");
        }
        if (before.Count >= 1)
        {
            keys.Add(before[^1]);
        }
        return keys.SelectMany(k => _named.GetValueOrDefault(k) ?? []);
    }

    private static bool IsUuid(string value) => Guid.TryParseExact(value, "D", out _);

    private void Name(string[] keys, params object[] values)
    {
        foreach (var value in values.Select(v => v.ToString()!))
        {
            foreach (var key in keys)
            {
                var list = _named.TryGetValue(key, out var known) ? known : _named[key] = [];
                if (!list.Contains(value))
                {
                    list.Add(value);
                }
            }
            if (IsUuid(value) && !_ids.Contains(value))
            {
                _ids.Add(value);
            }
        }
    }

    /// <summary>Sends one seeding request (expecting its status) and keeps its body as the example for its route.</summary>
    private async Task<JsonElement> CallAsync(HttpClient client, string method, string template, object? body, HttpStatusCode expected, params (string Name, object Value)[] path)
    {
        var url = path.Aggregate(template, (u, p) => u.Replace("{" + p.Name + "}", Uri.EscapeDataString(p.Value.ToString()!), StringComparison.Ordinal));
        using var request = new HttpRequestMessage(new HttpMethod(method), url);
        if (body is not null)
        {
            var json = JsonSerializer.Serialize(body, Json.Web);
            _examples[$"{method} {template}"] = json;
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }
        return await client.SendAsync(request).ExpectAsync(expected);
    }
}
