using System.Net;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>Every admin and user endpoint answers bad input with a 4xx problem and a code, and changes nothing.</summary>
public class BadInputTests
{
    public static TheoryData<string, string, string?, int, string> Cases => new()
    {
        { "POST", "/api/admin/users", "{}", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/users", """{"username":"x","context":"BANK"}""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/users", """{"username":"x","id":"00000000-0000-0000-0000-000000000000"}""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/users", """{"username":17}""", 400, "BAD_REQUEST" },
        { "POST", "/api/admin/users", "{", 400, "BAD_REQUEST" },
        { "POST", "/api/admin/users", null, 400, "BAD_REQUEST" },
        { "GET", "/api/admin/users/not-a-uuid", null, 404, "NOT_FOUND" },
        { "GET", "/api/admin/users/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "USER.NOT_FOUND" },
        { "PUT", "/api/admin/guardians/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/juniors/5b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "USER.NOT_FOUND" },
        { "PUT", "/api/admin/guardians/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/juniors/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 400, "USER.SELF_LINK" },
        { "POST", "/api/admin/ledger/accounts", "{}", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/ledger/accounts", """{"ownerId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","currency":"usd"}""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/ledger/accounts", """{"ownerId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","currency":"USD"}""", 404, "USER.NOT_FOUND" },
        { "GET", "/api/admin/ledger/accounts/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "LEDGER.ACCOUNT_NOT_FOUND" },
        { "GET", "/api/admin/ledger/transfers/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "LEDGER.TRANSFER_NOT_FOUND" },
        { "GET", "/api/admin/ledger/transfers/not-a-uuid", null, 404, "NOT_FOUND" },
        { "POST", "/api/admin/ledger/deposits", "{}", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":-1,"idempotencyKey":"k"}""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":1,"idempotencyKey":""}""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":1,"idempotencyKey":"k"}""", 404, "LEDGER.ACCOUNT_NOT_FOUND" },
        { "POST", "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":1e30,"idempotencyKey":"k"}""", 400, "BAD_REQUEST" },
        { "POST", "/api/admin/jobs/no.such.job/run", null, 404, "JOB.NOT_FOUND" },
        { "POST", "/api/admin/jobs/no.such.job/resume", null, 404, "JOB.NOT_FOUND" },
        { "GET", "/api/admin/cron-runs?limit=0", null, 400, "VALIDATION_FAILED" },
        { "GET", "/api/admin/cron-runs?limit=abc", null, 400, "BAD_REQUEST" },
        { "GET", "/api/admin/dead-letters?limit=5000", null, 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/dead-letters/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e/replay", null, 404, "DEAD_LETTER.NOT_FOUND" },
        { "DELETE", "/api/admin/dead-letters/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "DEAD_LETTER.NOT_FOUND" },
        { "GET", "/api/admin/events?after=x", null, 400, "BAD_REQUEST" },
        { "GET", "/api/me/ledger/transfers?limit=100000", null, 400, "VALIDATION_FAILED" },
        { "DELETE", "/api/admin/ledger/totals", null, 405, "METHOD_NOT_ALLOWED" },
        { "POST", "/api/admin/store/accounts", "[]", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/store/accounts", """[{"active":true}]""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/store/accounts", """[{"active":"yes","hasOrders":false}]""", 400, "BAD_REQUEST" },
        { "POST", "/api/admin/store/accounts", """{"active":true,"hasOrders":false}""", 400, "BAD_REQUEST" },
        { "POST", "/api/admin/store/accounts", null, 400, "BAD_REQUEST" },
        { "POST", "/api/admin/store/orders", """[{"sellerAccount":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","status":"active"}]""", 400, "VALIDATION_FAILED" },
        { "POST", "/api/admin/store/orders", """[{"sellerAccount":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","buyerAccount":"5b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","status":"active","productType":"managed_subscription","metadata":{"product_type":"one_off"}}]""", 400, "VALIDATION_FAILED" },
        { "GET", "/api/admin/store/accounts/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "STORE.ACCOUNT_NOT_FOUND" },
        { "GET", "/api/admin/store/orders/4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e", null, 404, "STORE.ORDER_NOT_FOUND" },
        { "GET", "/api/admin/store/repairs/4242", null, 404, "STORE.REPAIR_NOT_FOUND" },
        { "GET", "/api/admin/store/repairs/not-a-run", null, 404, "NOT_FOUND" },
        { "GET", "/api/admin/store/repairs?limit=0", null, 400, "VALIDATION_FAILED" },
        { "GET", "/api/admin/store/repairs?before=x", null, 400, "BAD_REQUEST" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BadInput_AnswersProblemWithCode_AndChangesNothing(string method, string url, string? body, int status, string code)
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Client(Guid.NewGuid(), "admin", "user");
        var before = await SnapshotAsync(admin);
        using var request = new HttpRequestMessage(new HttpMethod(method), url);
        if (body is not null)
        {
            request.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
        }
        else if (method is "POST" or "PUT")
        {
            request.Content = new StringContent("", System.Text.Encoding.UTF8, "application/json");
        }
        await admin.SendAsync(request).ExpectProblemAsync((HttpStatusCode)status, code);
        Assert.Equal(before, await SnapshotAsync(admin));
    }

    [Fact]
    public async Task AdminEndpoints_RefuseNonAdmins()
    {
        await using var app = TallyApp.Sqlite();
        var user = app.AsUser(Guid.NewGuid());
        await user.GetAsync("/api/admin/jobs").ExpectProblemAsync(HttpStatusCode.Forbidden, "FORBIDDEN");
        await app.CreateClient().GetAsync("/api/admin/jobs").ExpectProblemAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED");
        var forged = app.CreateClient();
        forged.DefaultRequestHeaders.Authorization = new("Bearer",
            Tally.Hosting.Auth.CreateToken("another-key-that-is-long-enough-0123456789", Guid.NewGuid(), ["admin"], TimeSpan.FromHours(1)));
        await forged.GetAsync("/api/admin/jobs").ExpectProblemAsync(HttpStatusCode.Unauthorized, "UNAUTHORIZED");
    }

    private static async Task<string> SnapshotAsync(HttpClient admin)
    {
        var totals = await admin.GetStringAsync("/api/admin/ledger/totals");
        var runs = await admin.GetStringAsync("/api/admin/cron-runs");
        var dead = await admin.GetStringAsync("/api/admin/dead-letters");
        var events = await admin.GetStringAsync("/api/admin/events");
        return string.Join("\n", totals, runs, dead, events);
    }
}
