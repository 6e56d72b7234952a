using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Tally.Hosting;

namespace Tally.Tests.Harness;

/// <summary>
/// Probes for Tally instances running as real processes (see <see cref="TallyProcess"/>): readiness,
/// and the instance registry as one instance's API lists it.
/// </summary>
public static class Fleet
{
    /// <summary>How long one instance may take to become ready on a shared 2-core machine, several starting at once.</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(180);

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>Waits until <c>/readyz</c> answers 200; fails at once, with the log, if the process exits first.</summary>
    public static async Task WaitReadyAsync(TallyProcess process, Uri url)
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        while (true)
        {
            if (process.HasExited)
            {
                Assert.Fail($"{process.Name} exited with {process.ExitCode} before it was ready:\n{process.Log()}");
            }
            try
            {
                using var response = await Http.GetAsync(new Uri(url, "/readyz"));
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            catch (TaskCanceledException)
            {
                // busy starting
            }
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"{process.Name} was not ready at {url} after {StartTimeout}:\n{process.Log()}");
            }
            await Task.Delay(250);
        }
    }

    /// <summary><c>GET /api/admin/instances</c> on <paramref name="api"/> with an admin token signed by <paramref name="signingKey"/>.</summary>
    public static async Task<Dictionary<string, (string[] Roles, bool Alive)>> InstancesAsync(Uri api, string signingKey)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(api, "/api/admin/instances?limit=1000"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Auth.CreateToken(signingKey, Guid.Empty, [Roles.Admin], TimeSpan.FromHours(1)));
        using var response = await Http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET /api/admin/instances on {api} answered {(int)response.StatusCode}: {body}");
        using var json = JsonDocument.Parse(body);
        return json.RootElement.EnumerateArray().ToDictionary(
            i => i.GetProperty("id").GetString()!,
            i => (i.GetProperty("roles").EnumerateArray().Select(r => r.GetString()!).ToArray(), i.GetProperty("alive").GetBoolean()));
    }

    /// <summary>The instance id Tally gives itself when <c>Tally:InstanceId</c> is unset: host and process id.</summary>
    public static string DefaultInstanceId(TallyProcess process) => $"{Environment.MachineName}-{process.Pid}";
}
