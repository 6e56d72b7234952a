using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

public class ConnectionSettingsTests
{
    [Theory]
    [InlineData("Connections:MaxConnectionsPerUser", "0")]
    [InlineData("Connections:MaxAccountsPerConnection", "0")]
    [InlineData("Connections:MaxForcedSyncsPerDay", "-1")]
    [InlineData("Connections:AccountsPerTransaction", "0")]
    [InlineData("Connections:AccountsPerTransaction", "5001")]
    [InlineData("Sandbox:SimpleFin:MaxSetupTokensPerHour", "0")]
    [InlineData("SimpleFin:SandboxUrl", "http://127.0.0.1:5080/sandbox/simplefin")]
    [InlineData("SimpleFin:SandboxUrl", "127.0.0.1:5080")]
    [InlineData("Sandbox:SimpleFin:PublicUrl", "sandbox.example")]
    [InlineData("Sandbox:SimpleFin:PublicUrl", "http://user:pw@127.0.0.1:5080")]
    public async Task BadLimit_StopsStartUpNamingTheSetting(string key, string value)
    {
        var messages = "";
        // As in StartupTests: WebApplicationFactory can lose a failed start's error to its own
        // disposal race (ObjectDisposedException of the service provider); such a start is tried again.
        for (var attempt = 0; attempt < 3 && messages.Length == 0; attempt++)
        {
            await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Sandbox:Enabled"] = "true", [key] = value });
            var error = Assert.ThrowsAny<Exception>(() => app.Server);
            messages = Errors.AllMessages(error);
            if (messages.Contains(nameof(IServiceProvider), StringComparison.Ordinal) && !messages.Contains(key, StringComparison.Ordinal))
            {
                messages = "";
            }
        }
        Assert.Contains(key, messages, StringComparison.Ordinal);
    }
}
