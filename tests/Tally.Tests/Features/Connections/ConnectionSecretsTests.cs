using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tally.Sandbox.SimpleFin;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

public class ConnectionSecretsTests
{
    [Fact]
    public async Task FullRun_LogsAnswersAndEvents_NeverCarryACredentialOrAccessUrl()
    {
        var logs = new CapturedLogs();
        await using var t = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?>
        {
            ["Logging:LogLevel:Default"] = "Trace",
            ["Logging:LogLevel:Microsoft.EntityFrameworkCore"] = "Trace",
            ["Tally:Roles:1"] = "scheduler",
            ["Tally:Roles:2"] = "worker",
        }, s =>
        {
            logs.Register(s);
            // Everything, from every category: a secret could leak through the framework too.
            s.Configure<LoggerFilterOptions>(o => o.AddFilter<CapturedLogs>(null, LogLevel.Trace).AddFilter<CapturedLogs>("Tally", LogLevel.Trace));
        }, bank: true);
        var bank = t.Bank;
        var answers = new StringBuilder();
        async Task<string> Call(Task<HttpResponseMessage> call)
        {
            using var response = await call;
            var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            answers.AppendLine(text).AppendLine(response.Headers.ToString());
            return text;
        }

        var (token, username) = await bank.SetupTokenAsync();
        var created = await Call(t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token }));
        var id = System.Text.Json.JsonDocument.Parse(created).RootElement.GetProperty("id").GetGuid();
        await Call(t.User.PostJsonAsync("/api/connections", new { providerSlug = "simplefin", setupToken = token })); // claimed already
        await Call(t.User.SyncAsync(id));
        await Call(t.User.SyncAsync(id));
        await Call(t.User.SyncAsync(id, force: true));
        await Call(t.User.GetAsync("/api/connections"));
        await Call(t.User.GetAsync($"/api/connections/{id}"));
        await Call(t.User.GetAsync($"/api/connections/{id}/accounts"));
        await Call(t.User.GetAsync($"/api/connections/{id}/sync-runs"));
        await Call(t.Admin.PostAsync("/api/admin/jobs/connections.sync-all/run", null));
        foreach (var scenario in new[] { "errlist-partial", "rate-limited", "revoked" })
        {
            await bank.SetScenarioAsync(username, scenario);
            t.Clock.Advance(TimeSpan.FromMinutes(3));
            await Call(t.User.SyncAsync(id, force: true));
            await using var db = t.App.Db();
            await db.ProviderConnections.Where(c => c.Id == id).ExecuteUpdateAsync(s => s.SetProperty(c => c.RetryNotBefore, (DateTime?)null), TestContext.Current.CancellationToken);
        }
        var (fresh, freshUser) = await bank.SetupTokenAsync();
        await Call(t.User.PutAsJsonAsync($"/api/connections/{id}/credentials", new { setupToken = fresh }, Json.Web));
        await Call(t.User.SyncAsync(id, force: true));
        var sandboxId = await t.User.CreateSandboxConnectionAsync(new { login = "sam", password = "hunter2-sandbox-secret" });
        await Call(t.User.SyncAsync(sandboxId));
        await Call(t.User.DeleteAsync($"/api/connections/{id}"));
        var events = await t.Admin.GetStringAsync("/api/admin/events?limit=1000", TestContext.Current.CancellationToken);
        await using (var db = t.App.Db())
        {
            var stored = await db.ProviderConnections.Select(c => c.CredentialsEncrypted).ToListAsync(TestContext.Current.CancellationToken);
            Assert.Contains(stored, s => s is not null);
            answers.AppendLine(string.Join("\n", stored));
        }

        var secrets = new List<string> { token, fresh, "hunter2-sandbox-secret" };
        foreach (var (setup, user) in new[] { (token, username), (fresh, freshUser) })
        {
            var claimUrl = Encoding.UTF8.GetString(Convert.FromBase64String(setup));
            var password = new SimpleFinSandbox.SandboxBank(Microsoft.Extensions.Options.Options.Create(new Tally.Sandbox.SandboxOptions())).Password(user);
            var access = new UriBuilder(bank.Root) { UserName = user, Password = password, Path = "/sandbox/simplefin" }.Uri.ToString();
            secrets.AddRange([claimUrl, claimUrl[(claimUrl.LastIndexOf('/') + 1)..], access, password, $"{user}:{password}",
                Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"))]);
        }
        var logged = string.Join("\n", logs.Entries.Select(e =>
            $"{e.Category} {e.Message} {string.Join(" ", e.Fields.Select(f => $"{f.Key}={f.Value}"))} {e.Exception}"));
        Assert.Contains(logs.Entries, e => e.Category.StartsWith("Microsoft.EntityFrameworkCore", StringComparison.Ordinal));
        Assert.Contains(logs.Entries, e => e.Message.Contains("synced (api)", StringComparison.Ordinal));
        foreach (var secret in secrets)
        {
            Assert.False(logged.Contains(secret, StringComparison.Ordinal), $"a log entry carries a secret ({secret[..4]}...)");
            Assert.False(answers.ToString().Contains(secret, StringComparison.Ordinal), $"an API answer carries a secret ({secret[..4]}...)");
            Assert.False(events.Contains(secret, StringComparison.Ordinal), $"an event carries a secret ({secret[..4]}...)");
        }
    }
}
