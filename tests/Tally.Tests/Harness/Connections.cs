using System.Net;
using System.Text.Json;

namespace Tally.Tests.Harness;

/// <summary>Shortcuts for the connections API and its events.</summary>
public static class Connections
{
    public static async Task<Guid> CreateSandboxConnectionAsync(this HttpClient user, object? credentials = null)
    {
        var body = await user.PostJsonAsync("/api/connections", new { providerSlug = "sandbox", credentials = credentials ?? new { login = Guid.NewGuid() } })
            .ExpectAsync(HttpStatusCode.Created);
        return body.GetProperty("id").GetGuid();
    }

    public static Task<HttpResponseMessage> SyncAsync(this HttpClient user, Guid connectionId, bool force = false) =>
        user.PostJsonAsync($"/api/connections/{connectionId}/sync", new { force });

    /// <summary>The events about one connection, oldest first: (type, payload).</summary>
    public static async Task<List<(string Type, JsonElement Payload)>> EventsAsync(this HttpClient admin, Guid connectionId)
    {
        var events = await admin.GetAsync($"/api/admin/events?subject={connectionId}&limit=1000").ExpectAsync(HttpStatusCode.OK);
        return events.EnumerateArray().Select(e => (e.GetProperty("eventType").GetString()!, e.GetProperty("payload"))).ToList();
    }

    public static async Task<List<string>> EventTypesAsync(this HttpClient admin, Guid connectionId) =>
        (await admin.EventsAsync(connectionId)).Select(e => e.Type).ToList();
}
