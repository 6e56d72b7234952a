using System.Net;
using Tally.Hosting;

namespace Tally.Tests.Harness;

/// <summary>Builds an app on the named storage ("sqlite" or "postgres") so one scenario runs on both.</summary>
public static class Apps
{
    public static async Task<TallyApp> CreateAsync(string storage, IDictionary<string, string?>? settings = null, Action<Microsoft.Extensions.DependencyInjection.IServiceCollection>? services = null) => storage switch
    {
        "sqlite" => TallyApp.Sqlite(settings, services),
        "postgres" => TallyApp.Postgres(await Servers.NewPostgresDatabaseAsync(), settings, services),
        _ => throw new ArgumentOutOfRangeException(nameof(storage), storage, null),
    };

    public static async Task<Guid> CreateUserAsync(this HttpClient admin, string? username = null, string context = "MOBILE_BANKING")
    {
        var id = Guid.NewGuid();
        await admin.PostJsonAsync("/api/admin/users", new { id, username = username ?? $"user-{id:N}", context })
            .ExpectAsync(HttpStatusCode.Created);
        return id;
    }

    public static async Task<Guid> CreateAccountAsync(this HttpClient admin, Guid ownerId, string currency = "USD")
    {
        var body = await admin.PostJsonAsync("/api/admin/ledger/accounts", new { ownerId, currency }).ExpectAsync(HttpStatusCode.Created);
        return body.GetProperty("id").GetGuid();
    }

    public static async Task DepositAsync(this HttpClient admin, Guid accountId, decimal amount, string? key = null) =>
        await admin.PostJsonAsync("/api/admin/ledger/deposits", new { accountId, amount, idempotencyKey = key ?? Guid.NewGuid().ToString() })
            .ExpectAsync(HttpStatusCode.Created);

    public static async Task<decimal> BalanceAsync(this HttpClient admin, Guid accountId)
    {
        var body = await admin.GetAsync($"/api/admin/ledger/accounts/{accountId}").ExpectAsync(HttpStatusCode.OK);
        return body.GetProperty("balance").GetDecimal();
    }

    public static async Task LinkAsync(this HttpClient admin, Guid guardianId, Guid juniorId) =>
        await admin.PutAsync($"/api/admin/guardians/{guardianId}/juniors/{juniorId}", null).ExpectAsync(HttpStatusCode.NoContent);

    public static HttpClient AsGuardian(this TallyApp app, Guid guardianId) => app.Client(guardianId, Roles.Guardian, Roles.User);

    public static HttpClient AsUser(this TallyApp app, Guid userId) => app.Client(userId, Roles.User);
}
