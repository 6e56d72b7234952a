using System.Net;
using Microsoft.Extensions.Options;
using Tally.Hosting;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary><c>Tally:Roles</c> as people write it: one string works like the list; anything else stops start-up naming the setting.</summary>
public class RoleSettingTests
{
    [Theory]
    [InlineData("worker", new[] { "worker" })]
    [InlineData("api,scheduler", new[] { "api", "scheduler" })]
    [InlineData(" API ; Worker ", new[] { "api", "worker" })]
    public async Task OneString_IsTheListOfRoles(string setting, string[] expected)
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles"] = setting });
        var client = app.Admin();
        Assert.Equal(expected, app.Get<IOptions<TallyOptions>>().Value.EffectiveRoles);
        // The admin API is the api role's: an instance without it does not answer there.
        var jobs = await client.GetAsync("/api/admin/jobs", TestContext.Current.CancellationToken);
        Assert.Equal(expected.Contains("api") ? HttpStatusCode.OK : HttpStatusCode.NotFound, jobs.StatusCode);
    }

    [Theory]
    [InlineData("Tally:Roles", "workr", "Tally:Roles")]
    [InlineData("Tally:Roles", "api,everything", "Tally:Roles")]
    [InlineData("Tally:Roles:0", "cron", "Tally:Roles")]
    public async Task UnknownRole_StopsStartUp_NamingTheSetting(string key, string value, string named)
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { [key] = value });
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => app.Admin().GetAsync("/healthz"));
        Assert.Contains(named, failure.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task StringAndList_Together_StopStartUp()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["Tally:Roles"] = "worker", ["Tally:Roles:0"] = "api" });
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => app.Admin().GetAsync("/healthz"));
        Assert.Contains("set it one way", failure.ToString(), StringComparison.Ordinal);
    }
}
