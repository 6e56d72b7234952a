using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Tally.Hosting;
using Tally.Tests.Hosting;

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

    /// <summary>
    /// <c>scripts/cluster.sh ARGUMENTS</c> on the test servers (<paramref name="servers"/>) with the
    /// test's own build of Tally; <paramref name="settings"/> (<c>Name__Sub=value</c>) reach every instance.
    /// </summary>
    public static Task<(int Code, string Output)> ClusterAsync(string servers, IEnumerable<string> settings, params string[] arguments) =>
        DeployFiles.RunAsync("env", [
            $"TALLY_CLUSTER_SERVERS={servers}", $"TALLY_CLUSTER_APP={AppContext.BaseDirectory}", .. settings,
            "bash", DeployFiles.Path("scripts/cluster.sh"), .. arguments], TimeSpan.FromMinutes(5));

    /// <summary>What <c>scripts/cluster.sh start DIR</c> wrote to <c>DIR/cluster.env</c>, unquoted.</summary>
    public static Dictionary<string, string> ClusterEnvironment(string dir) =>
        File.ReadAllLines(System.IO.Path.Combine(dir, "cluster.env"))
            .Where(l => l.StartsWith("export ", StringComparison.Ordinal))
            .Select(l => l["export ".Length..].Split('=', 2))
            .ToDictionary(kv => kv[0], kv => Unquote(kv[1]));

    /// <summary>A value as bash's <c>printf %q</c> wrote it: quoted or escaped only where it must be.</summary>
    private static string Unquote(string value) =>
        value.StartsWith('\'') && value.EndsWith('\'') ? value[1..^1]
        : value.StartsWith("$'", StringComparison.Ordinal) ? value[2..^1].Replace("\\'", "'", StringComparison.Ordinal)
        : value.Replace("\\", "", StringComparison.Ordinal);
}
