using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>
/// What ASP.NET Core refuses before an endpoint runs is answered in the client's terms: the field as
/// the client sent it (JSON path or query name) and what it must be, never a CLR type or a framework
/// message; a missing body, a wrong content type and a body too large each with their own answer.
/// </summary>
public class RequestProblemTests
{
    public static TheoryData<string, string, string, string> UnreadableBodies => new()
    {
        { "/api/admin/users", """{"username":17}""", "username", "must be a string" },
        { "/api/admin/users", """{"username":"x","isActive":"yes"}""", "isActive", "must be true or false" },
        { "/api/admin/users", """{"username":"x","id":"not-a-uuid"}""", "id", "must be a UUID" },
        { "/api/admin/users", "[1,2]", "$", "must be an object" },
        { "/api/admin/users", "{", "$", "is not valid JSON" },
        { "/api/admin/users", """{"username":"x",}""", "$", "is not valid JSON" },
        { "/api/admin/core-accounts", """{"userId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","accountNumber":1}""", "accountNumber", "must be a string" },
        { "/api/admin/store/accounts", """[{"active":true,"hasOrders":false},{"active":"yes","hasOrders":false}]""", "[1].active", "must be true or false" },
        { "/api/admin/store/accounts", """{"active":true,"hasOrders":false}""", "$", "must be an array" },
        { "/api/admin/store/orders", """[{"sellerAccount":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","buyerAccount":"nope"}]""", "[0].buyerAccount", "must be a UUID" },
        { "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":"ten","idempotencyKey":"k"}""", "amount", "must be a number" },
        { "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":true,"idempotencyKey":"k"}""", "amount", "must be a number" },
        { "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":1e30,"idempotencyKey":"k"}""", "amount", "is beyond the largest amount" },
        { "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":"1e30","idempotencyKey":"k"}""", "amount", "is beyond the largest amount" },
        { "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","amount":0.1000000000000000000000000000001,"idempotencyKey":"k"}""", "amount", "would have to be rounded" },
        { "/api/admin/ledger/deposits", """{"accountId":"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e","Amount":1e-29,"idempotencyKey":"k"}""", "Amount", "would have to be rounded" },
    };

    [Theory]
    [MemberData(nameof(UnreadableBodies))]
    public async Task UnreadableBody_NamesTheFieldAsSent_AndLeaksNoTypeName(string url, string json, string field, string message)
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var before = await Rows.CountAsync(app);
        using var response = await admin.PostRawAsync(url, json);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal("BAD_REQUEST", problem.GetProperty("code").GetString());
        var errors = problem.GetProperty("errors");
        Assert.True(errors.TryGetProperty(field, out var messages), $"errors should name {field}: {text}");
        Assert.Contains(message, messages[0].GetString());
        AssertNoInternals(text);
        Assert.Equal(before, await Rows.CountAsync(app));
    }

    [Fact]
    public async Task UnreadableAllowance_NamesTheArrayItem()
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var guardian = await admin.CreateUserAsync();
        var junior = await admin.CreateUserAsync(context: "WALLET");
        await admin.LinkAsync(guardian, junior);
        var text = await ProblemTextAsync(app.AsGuardian(guardian).PostRawAsync($"/api/guardians/me/allowances/{junior}",
            """{"amount":1,"frequency":"WEEKLY","status":"ON","byDay":["MO","TU",7]}"""), HttpStatusCode.BadRequest);
        Assert.Contains("\"byDay[2]\":[\"must be a string\"]", text);
        AssertNoInternals(text);
    }

    [Theory]
    [InlineData("/api/admin/cron-runs?limit=abc", "limit")]
    [InlineData("/api/admin/cron-runs?limit=99999999999", "limit")]
    [InlineData("/api/admin/events?after=x", "after")]
    [InlineData("/api/admin/events?limit=1.5", "limit")]
    public async Task UnreadableQueryValue_NamesTheParameter(string url, string parameter)
    {
        await using var app = TallyApp.Sqlite();
        var text = await ProblemTextAsync(app.Admin().GetAsync(url), HttpStatusCode.BadRequest);
        var errors = JsonDocument.Parse(text).RootElement.GetProperty("errors");
        Assert.Equal([parameter], errors.EnumerateObject().Select(e => e.Name));
        Assert.Contains("whole number", errors.GetProperty(parameter)[0].GetString());
        AssertNoInternals(text);
    }

    [Theory]
    [InlineData("")]
    [InlineData("null")]
    public async Task MissingBody_IsAskedFor(string body)
    {
        await using var app = TallyApp.Sqlite();
        var text = await ProblemTextAsync(app.Admin().PostRawAsync("/api/admin/users", body), HttpStatusCode.BadRequest);
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal("BAD_REQUEST", problem.GetProperty("code").GetString());
        Assert.Contains("JSON body", problem.GetProperty("detail").GetString());
        Assert.True(problem.GetProperty("errors").TryGetProperty("$", out _));
        AssertNoInternals(text);
    }

    [Fact]
    public async Task NotJson_Answers415()
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var text = await ProblemTextAsync(admin.PostAsync("/api/admin/users", new StringContent("username=x", Encoding.UTF8, "application/x-www-form-urlencoded")),
            HttpStatusCode.UnsupportedMediaType);
        Assert.Equal("UNSUPPORTED_MEDIA_TYPE", JsonDocument.Parse(text).RootElement.GetProperty("code").GetString());
        AssertNoInternals(text);
        await admin.PostAsync("/api/admin/users", new StringContent("""{"username":"x"}""", Encoding.UTF8, "text/plain"))
            .ExpectProblemAsync(HttpStatusCode.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE");
    }

    [Theory]
    [InlineData("/api/admin/users", "{\"username\":{0}1{1}}", "username", "is nested more than 64 levels deep")]
    [InlineData("/api/admin/store/orders", "[{\"sellerAccount\":\"4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e\",\"metadata\":{0}1{1}}]", "[0].metadata", "is nested more than 64 levels deep")]
    [InlineData("/api/admin/users", "{0}{1}", "$", "must be an object")]
    public async Task DeeplyNestedBody_Answers400(string url, string template, string field, string message)
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var before = await Rows.CountAsync(app);
        var json = template.Replace("{0}", new string('[', 10_000), StringComparison.Ordinal).Replace("{1}", new string(']', 10_000), StringComparison.Ordinal);
        var text = await ProblemTextAsync(admin.PostRawAsync(url, json), HttpStatusCode.BadRequest);
        Assert.Contains($"\"{field}\":[\"{message}\"]", text);
        AssertNoInternals(text);
        Assert.Equal(before, await Rows.CountAsync(app));
    }

    [Fact]
    public async Task BodyOverTheLimit_Answers413_AndWritesNothing()
    {
        await using var app = TallyApp.Sqlite();
        var admin = app.Admin();
        var before = await Rows.CountAsync(app);
        var padded = """{"username":"big" """ + new string(' ', 1 << 20) + "}";
        var text = await ProblemTextAsync(admin.PostRawAsync("/api/admin/users", padded), HttpStatusCode.RequestEntityTooLarge);
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal("PAYLOAD_TOO_LARGE", problem.GetProperty("code").GetString());
        Assert.Contains("1048576 bytes", problem.GetProperty("detail").GetString());
        Assert.Equal(before, await Rows.CountAsync(app));
    }

    [Fact]
    public async Task BodyLimit_IsASetting_AndBulkLoadsHaveTheirOwn()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:MaxRequestBodyBytes"] = "2048", ["Tally:MaxBulkRequestBodyBytes"] = "8192" });
        var admin = app.Admin();
        var small = """{"username":"small" """ + new string(' ', 1000) + "}";
        await admin.PostRawAsync("/api/admin/users", small).ExpectAsync(HttpStatusCode.Created);
        var large = """{"username":"large" """ + new string(' ', 3000) + "}";
        var problem = await admin.PostRawAsync("/api/admin/users", large).ExpectProblemAsync(HttpStatusCode.RequestEntityTooLarge, "PAYLOAD_TOO_LARGE");
        Assert.Contains("2048 bytes", problem.GetProperty("detail").GetString());

        var accounts = "[" + string.Join(",", Enumerable.Repeat("""{"active":true,"hasOrders":false}""", 100)) + "]"; // ~3.4 KB
        await admin.PostRawAsync("/api/admin/store/accounts", accounts).ExpectAsync(HttpStatusCode.Created);
        var tooMany = "[" + string.Join(",", Enumerable.Repeat("""{"active":true,"hasOrders":false}""", 300)) + "]"; // ~10 KB
        var bulk = await admin.PostRawAsync("/api/admin/store/accounts", tooMany).ExpectProblemAsync(HttpStatusCode.RequestEntityTooLarge, "PAYLOAD_TOO_LARGE");
        Assert.Contains("8192 bytes", bulk.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task ChunkedBodyOverTheLimit_OnARealServer_Answers413()
    {
        var port = Ports.Free();
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:MaxRequestBodyBytes"] = "4096", ["urls"] = $"http://127.0.0.1:{port}" });
        app.UseKestrel();
        app.StartServer();
        using var admin = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        admin.DefaultRequestHeaders.Authorization = new("Bearer", Tally.Hosting.Auth.CreateToken(TallyApp.SigningKey, Guid.Empty, ["admin"], TimeSpan.FromHours(1)));
        var before = await Rows.CountAsync(app);
        // JsonContent streams without a Content-Length: the server stops it once it passes the limit.
        using var content = JsonContent.Create(new { username = "chunked", customerNumber = new string('1', 10_000) });
        Assert.Null(content.Headers.ContentLength);
        await admin.PostAsync("/api/admin/users", content).ExpectProblemAsync(HttpStatusCode.RequestEntityTooLarge, "PAYLOAD_TOO_LARGE");
        Assert.Equal(before, await Rows.CountAsync(app));
    }

    private static async Task<string> ProblemTextAsync(Task<HttpResponseMessage> call, HttpStatusCode status)
    {
        using var response = await call;
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"Expected {(int)status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return text;
    }

    /// <summary>No CLR type, framework message or serializer position reaches the client.</summary>
    private static void AssertNoInternals(string text)
    {
        foreach (var leak in new[] { "System.", "Tally.", "CreateUser", "AllowanceRequest", "CreateDeposit", "StoreAccountInput", "StoreOrderInput",
                     "CreateCoreAccount", "Failed to", "parameter \\u0022", "Path:", "LineNumber", "BytePosition", "Nullable", "Int32", "Int64" })
        {
            Assert.DoesNotContain(leak, text, StringComparison.Ordinal);
        }
    }
}
