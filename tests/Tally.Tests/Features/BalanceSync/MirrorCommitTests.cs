using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Tally.Data;
using Tally.Features.BalanceSync;
using Tally.Hosting;
using Tally.Jobs;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.BalanceSync;

/// <summary>
/// <c>BalanceSync:MirrorCommit</c>: an explicit setting whose default is what Tally always did
/// (asynchronous on PostgreSQL, and on SQLite while the outbox table is the only event log), and a
/// start that refuses the one combination whose events could outrun the disk.
/// </summary>
public class MirrorCommitTests
{
    [Theory]
    [InlineData(StorageProvider.Postgres, false, "async")]
    [InlineData(StorageProvider.Postgres, true, "async")]
    [InlineData(StorageProvider.Sqlite, false, "async")]
    [InlineData(StorageProvider.Sqlite, true, "durable")]
    public void Default_IsWhatTallyDidBeforeItWasASetting(StorageProvider storage, bool brokered, string expected) =>
        Assert.Equal(expected, BalanceSyncOptions.DefaultMirrorCommit(storage, brokered));

    [Theory]
    [InlineData("async", StorageProvider.Sqlite, true, true)]
    [InlineData("durable", StorageProvider.Sqlite, true, false)]
    [InlineData("async", StorageProvider.Sqlite, false, false)]
    [InlineData("async", StorageProvider.Postgres, true, false)]
    [InlineData("durable", StorageProvider.Postgres, false, false)]
    public void OnlyAsyncOnSqliteWithABroker_IsRefused(string commit, StorageProvider storage, bool brokered, bool refused) =>
        Assert.Equal(refused, BalanceSyncOptions.RefuseMirrorCommit(commit, storage, brokered) is not null);

    [Theory]
    [InlineData(null, false, "async")]
    [InlineData(null, true, "durable")]
    [InlineData("durable", false, "durable")]
    public void Unset_IsResolvedAtStart_SoTheBoundSettingSaysWhatRuns(string? setting, bool brokered, string expected)
    {
        using var app = Build(new Dictionary<string, string?>
        {
            ["BalanceSync:MirrorCommit"] = setting,
            ["RabbitMq:Url"] = brokered ? "amqp://127.0.0.1:1/" : null,
        });
        var options = app.Services.GetRequiredService<IOptions<BalanceSyncOptions>>().Value;
        Assert.Equal(expected, options.MirrorCommit);
        Assert.Equal(expected == "async", options.MirrorCommitsAsynchronously);
    }

    [Fact]
    public void AsyncOnSqliteWithABroker_StopsStartUpSayingWhy()
    {
        var error = Assert.ThrowsAny<Exception>(() => Build(new Dictionary<string, string?>
        {
            ["BalanceSync:MirrorCommit"] = "async",
            ["RabbitMq:Url"] = "amqp://127.0.0.1:1/",
        }));
        var messages = Errors.AllMessages(error);
        Assert.Contains("BalanceSync:MirrorCommit", messages);
        Assert.Contains("durable", messages);
    }

    [Fact]
    public void UnknownValue_StopsStartUpNamingTheSetting()
    {
        using var app = Build(new Dictionary<string, string?> { ["BalanceSync:MirrorCommit"] = "sometimes" });
        var error = Assert.ThrowsAny<Exception>(() => app.Services.GetRequiredService<IOptions<BalanceSyncOptions>>().Value);
        Assert.Contains("BalanceSync:MirrorCommit must be async or durable", Errors.AllMessages(error));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task Durable_LoginSyncAnswersAndRecordsTheBalanceAsAsyncDoes(string storage)
    {
        await using var banking = await CoreBanking.StartAsync(storage, new Dictionary<string, string?> { ["BalanceSync:MirrorCommit"] = "durable" });
        var user = await banking.UserAsync("ACC-DURABLE-1");

        var body = await banking.LoginSyncAsync(user, HttpStatusCode.OK);

        var (working, locked) = banking.Sandbox.T24.BalanceAt("ACC-DURABLE-1", DateTime.UtcNow);
        Assert.True(body.GetProperty("ok").GetBoolean());
        Assert.Equal(working - locked, (await banking.AccountAsync(user)).GetProperty("balance").GetDecimal());
        var events = await banking.Admin.GetAsync("/api/admin/events?type=CoreBalanceUpdated").ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(1, events.GetArrayLength());
    }

    /// <summary>A plain host on SQLite with balance sync (not started): what start-up resolves and refuses.</summary>
    private static WebApplication Build(Dictionary<string, string?> settings)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        settings["Auth:SigningKey"] = TallyApp.SigningKey;
        settings["ConnectionStrings:Sqlite"] = $"Data Source={Path.Combine(Path.GetTempPath(), $"tally-mirror-{Guid.NewGuid():N}.db")}";
        settings["T24:BaseUrl"] = "http://127.0.0.1:1/";
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Logging.ClearProviders();
        builder.AddConfigAliases().AddTallyOptions().AddTallyData().AddJobRuntime().AddBalanceSync();
        return builder.Build();
    }
}
