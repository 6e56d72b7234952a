using System.Net;
using System.Text;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>
/// Text that a database refuses (PostgreSQL: a NUL anywhere), control characters, overlong names and
/// out-of-range page sizes and cursors, on every admin endpoint that takes text: a 4xx naming the field
/// or parameter, never a 500, and nothing written. On both databases, since they refuse different things.
/// </summary>
public class ExtremeInputTests
{
    private const string Someone = "4b0e1b9c-8d59-4cf5-9d2e-2f1a2b3c4d5e";
    private static readonly string Long = new('x', 201);

    public static readonly (string Method, string Url, string? Json, string Field)[] Cases =
    [
        ("POST", "/api/admin/core-accounts", $$"""{"userId":"{{Someone}}","accountNumber":"1","accountType":"SAV\u0000INGS","currency":"USD"}""", "accountType"),
        ("POST", "/api/admin/core-accounts", $$"""{"userId":"{{Someone}}","accountNumber":"1","accountType":"SAVINGS\n","currency":"USD"}""", "accountType"),
        ("POST", "/api/admin/core-accounts", $$"""{"userId":"{{Someone}}","accountNumber":"1\u0000","accountType":"SAVINGS","currency":"USD"}""", "accountNumber"),
        ("POST", "/api/admin/core-accounts", $$"""{"userId":"{{Someone}}","accountNumber":"{{new string('9', 35)}}","accountType":"SAVINGS","currency":"USD"}""", "accountNumber"),
        ("POST", "/api/admin/core-accounts", $$"""{"userId":"{{Someone}}","accountNumber":"1","accountType":"SAVINGS","currency":"US\u0000"}""", "currency"),
        ("POST", "/api/admin/store/orders", $$"""[{"sellerAccount":"{{Someone}}","buyerAccount":"{{Someone}}","status":"act\u0000ive","productType":"x"}]""", "[0].status"),
        ("POST", "/api/admin/store/orders", $$"""[{"sellerAccount":"{{Someone}}","buyerAccount":"{{Someone}}","status":"active","productType":"\u001b[2J"}]""", "[0].productType"),
        ("POST", "/api/admin/store/orders", $$"""[{"sellerAccount":"{{Someone}}","buyerAccount":"{{Someone}}","status":"active","productType":"{{new string('p', 129)}}"}]""", "[0].productType"),
        ("POST", "/api/admin/store/orders", $$"""[{"sellerAccount":"{{Someone}}","buyerAccount":"{{Someone}}","status":"active","productType":"x","metadata":{"plan":"\ud800"} }]""", "[0].metadata"),
        ("POST", "/api/admin/store/orders", $$"""[{"sellerAccount":"{{Someone}}","buyerAccount":"{{Someone}}","status":"active","productType":"x","metadata":{"\udc00":1} }]""", "[0].metadata"),
        ("POST", "/api/admin/users", """{"username":"\ud800"}""", "username"),
        ("POST", "/api/admin/jobs/a%07b/run", null, "name"),
        ("POST", $"/api/admin/jobs/{Long}/run", null, "name"),
        ("POST", "/api/admin/jobs/a%0Ab/pause", null, "name"),
        ("POST", $"/api/admin/jobs/{Long}/resume", null, "name"),
        ("GET", "/api/admin/cron-runs?job=%00", null, "job"),
        ("GET", $"/api/admin/cron-runs?job={Long}", null, "job"),
        ("GET", "/api/admin/cron-runs?status=%00", null, "status"),
        ("GET", "/api/admin/cron-runs?status=DONE", null, "status"),
        ("GET", "/api/admin/cron-runs?limit=-5", null, "limit"),
        ("GET", "/api/admin/cron-runs?limit=2147483648", null, "limit"),
        ("GET", "/api/admin/dead-letters?queue=%00", null, "queue"),
        ("GET", "/api/admin/dead-letters?limit=0", null, "limit"),
        ("GET", "/api/admin/events?type=%00", null, "type"),
        ("GET", "/api/admin/events?subject=a%00b", null, "subject"),
        ("GET", $"/api/admin/events?subject={Long}", null, "subject"),
        ("GET", "/api/admin/events?after=-1", null, "after"),
        ("GET", "/api/admin/events?after=9223372036854775808", null, "after"),
        ("GET", "/api/admin/events?limit=1001", null, "limit"),
    ];

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task ExtremeInput_Answers4xxNamingTheField_AndWritesNothing(string storage)
    {
        await using var app = await Apps.CreateAsync(storage);
        var admin = app.Admin();
        // A user and store account that exist, so that only the field under test can be wrong.
        await admin.PostJsonAsync("/api/admin/users", new { id = Guid.Parse(Someone), username = "someone" }).ExpectAsync(HttpStatusCode.Created);
        await admin.PostRawAsync("/api/admin/store/accounts", $$"""[{"id":"{{Someone}}","active":true,"hasOrders":false}]""").ExpectAsync(HttpStatusCode.Created);
        var before = await Rows.CountAsync(app);
        foreach (var (method, url, json, field) in Cases)
        {
            using var request = new HttpRequestMessage(new HttpMethod(method), url);
            if (json is not null)
            {
                request.Content = new StringContent(json, Encoding.UTF8, "application/json");
            }
            using var response = await admin.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{method} {url}: {(int)response.StatusCode} {text}");
            var errors = System.Text.Json.JsonDocument.Parse(text).RootElement.GetProperty("errors");
            Assert.True(errors.TryGetProperty(field, out _), $"{method} {url}: errors should name {field}: {text}");
        }
        Assert.Equal(before, await Rows.CountAsync(app));
    }
}
