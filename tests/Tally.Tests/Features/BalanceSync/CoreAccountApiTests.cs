using System.Net;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>The admin API that loads core accounts and queues users, and its answers to bad input.</summary>
public class CoreAccountApiTests
{
    public static TheoryData<string, string, string?, int, string> BadInput => new()
    {
        { "POST", "/api/admin/core-accounts", "{}", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/core-accounts", """{"userId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","accountNumber":"has space","accountType":"SAVINGS","currency":"USD"}""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/core-accounts", """{"userId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","accountNumber":"1","accountType":"SAVINGS","currency":"usd"}""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/core-accounts", """{"userId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","accountNumber":"1","accountType":"","currency":"USD"}""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/core-accounts", """{"userId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","accountNumber":"1","accountType":"SAVINGS","currency":"USD"}""", 404, "USER.NOT_FOUND" },
        { "POST", "/api/admin/core-accounts", """{"userId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","accountNumber":1}""", 400, "BAD_REQUEST" },
        { "POST", "/api/admin/core-accounts", "{", 400, "BAD_REQUEST" },
        { "POST", "/api/admin/balance-sync/users/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "USER.NOT_FOUND" },
        { "POST", "/api/admin/balance-sync/users/not-a-uuid", null, 404, "NOT_FOUND" },
        { "GET", "/api/admin/balance-sync/users/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "USER.NOT_FOUND" },
        { "POST", "/api/me/balances/sync", null, 404, "USER.NOT_FOUND" },
    };

    [Theory]
    [MemberData(nameof(BadInput))]
    public async Task BadInput_AnswersProblemWithCode_AndQueuesNothing(string method, string url, string? body, int status, string code)
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Client(Guid.NewGuid(), "admin", "user");
        using var request = new HttpRequestMessage(new HttpMethod(method), url);
        request.Content = new StringContent(body ?? "", System.Text.Encoding.UTF8, "application/json");
        await admin.SendAsync(request).ExpectProblemAsync((HttpStatusCode)status, code);
        var status0 = await app.CreateClient().GetAsync("/api/sync/status").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, status0.GetProperty("priority").GetInt64() + status0.GetProperty("background").GetInt64() + status0.GetProperty("inFlight").GetInt64());
    }

    [Fact]
    public async Task CoreAccount_RepeatedImportIsAnswered_ConflictingOneRefused_AndTheUsersAccountsAreListed()
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var user = await admin.CreateUserAsync();
        var id = Guid.NewGuid();
        var account = new { id, userId = user, accountNumber = "0012345678", accountType = "current", isPrimary = true, currency = "EUR" };

        var created = await admin.PostJsonAsync("/api/admin/core-accounts", account).ExpectAsync(HttpStatusCode.Created);
        Assert.Equal("CURRENT", created.GetProperty("accountType").GetString());
        Assert.True(created.GetProperty("isActive").GetBoolean());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, created.GetProperty("balance").ValueKind);
        await admin.PostJsonAsync("/api/admin/core-accounts", account).ExpectAsync(HttpStatusCode.OK);
        await admin.PostJsonAsync("/api/admin/core-accounts", account with { id = Guid.NewGuid() })
            .ExpectProblemAsync(HttpStatusCode.Conflict, "CORE_ACCOUNT.ALREADY_EXISTS");
        await admin.PostJsonAsync("/api/admin/core-accounts", new { userId = user, accountNumber = "0099", accountType = "SAVINGS", isPrimary = false, currency = "EUR" })
            .ExpectAsync(HttpStatusCode.Created);

        var view = await admin.GetAsync($"/api/admin/balance-sync/users/{user}").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(["0012345678", "0099"], view.GetProperty("accounts").EnumerateArray().Select(a => a.GetProperty("accountNumber").GetString()));
        Assert.False(view.GetProperty("ok").GetBoolean()); // never synced
        Assert.Equal("EUR", view.GetProperty("currency").GetString());

        // Only admins load accounts; a user reads only their own.
        await app.AsUser(user).PostJsonAsync("/api/admin/core-accounts", account).ExpectProblemAsync(HttpStatusCode.Forbidden, "FORBIDDEN");
        var mine = await app.AsUser(Guid.NewGuid()).GetAsync("/api/me/balances").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(0, mine.GetProperty("accounts").GetArrayLength());
    }
}
