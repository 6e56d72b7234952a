using System.Net;
using System.Text.Json;
using Tally.Features.Connections;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

public class SyncScheduleTests
{
    [Fact]
    public void Schedule_OverTwoDaysOfTicks_SyncsEachConnectionOncePerPeriod_SpreadOverThePeriod()
    {
        var period = TimeSpan.FromHours(2);
        var tick = TimeSpan.FromMinutes(5);
        var ids = Enumerable.Range(0, 1_000).Select(_ => Guid.NewGuid()).ToList();
        var last = new Dictionary<Guid, DateTime>();
        var secondDay = ids.ToDictionary(id => id, _ => 0);
        var perTick = new List<int>();
        var start = new DateTime(2030, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        for (var now = start; now < start.AddDays(2); now += tick)
        {
            var due = ids.Where(id => SyncSchedule.IsDue(id, last.TryGetValue(id, out var l) ? l : null, last.TryGetValue(id, out var s) ? s : null,
                null, now, period, TimeSpan.FromMinutes(15))).ToList();
            foreach (var id in due)
            {
                last[id] = now;
                if (now >= start.AddDays(1))
                {
                    secondDay[id]++;
                }
            }
            if (now >= start.AddDays(1))
            {
                perTick.Add(due.Count);
            }
        }
        // 24 h / 2 h: twelve a day each, well inside SimpleFIN's 24.
        Assert.All(secondDay.Values, count => Assert.InRange(count, 12, 13));
        var mean = perTick.Average();
        Assert.InRange(mean, 35, 50); // 1,000 connections x 5 min / 120 min
        Assert.True(perTick.Max() < mean * 2, $"the busiest tick had {perTick.Max()} syncs against a mean of {mean}");
    }

    [Fact]
    public void Schedule_WaitsForTheMinimumIntervalAndTheProvidersRetryTime()
    {
        var id = Guid.NewGuid();
        var now = new DateTime(2030, 1, 1, 12, 0, 0, DateTimeKind.Utc);
        var period = TimeSpan.FromHours(2);
        var min = TimeSpan.FromMinutes(15);
        Assert.True(SyncSchedule.IsDue(id, null, null, null, now, period, min));
        Assert.False(SyncSchedule.IsDue(id, null, now.AddMinutes(-5), null, now, period, min));
        Assert.False(SyncSchedule.IsDue(id, null, null, now.AddMinutes(1), now, period, min));
        Assert.False(SyncSchedule.IsDue(id, now.AddMinutes(-1), now.AddMinutes(-1), null, now, period, min) && SyncSchedule.LatestSlot(id, now, period) < now.AddMinutes(-1));
        var slot = SyncSchedule.LatestSlot(id, now, period);
        Assert.InRange(slot, now - period, now);
        Assert.Equal(slot, SyncSchedule.LatestSlot(id, slot, period));
    }

    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task SyncAllJob_SyncsActiveDueConnections_ThenNoneUntilTheirNextSlot(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage, new Dictionary<string, string?>
        {
            ["Connections:Providers:sandbox:SchedulePeriod"] = "00:30:00",
        });
        var active = new[] { await t.User.CreateSandboxConnectionAsync(), await t.User.CreateSandboxConnectionAsync(), await t.User.CreateSandboxConnectionAsync() };
        var deleted = await t.User.CreateSandboxConnectionAsync();
        await t.User.DeleteAsync($"/api/connections/{deleted}").ExpectAsync(HttpStatusCode.NoContent);
        var refused = await t.User.CreateSandboxConnectionAsync(new { login = "refused", fail = "auth_required" });
        await t.User.SyncAsync(refused).ExpectProblemAsync(HttpStatusCode.BadGateway, "PROVIDER_ERROR");

        var first = await RunJobAsync(t);
        Assert.Equal(3, first.GetProperty("synced").GetInt32());
        Assert.Equal(0, first.GetProperty("failed").GetInt32());
        foreach (var id in active)
        {
            var runs = await t.User.GetAsync($"/api/connections/{id}/sync-runs").ExpectAsync(HttpStatusCode.OK);
            Assert.Equal("schedule", runs[0].GetProperty("trigger").GetString());
            Assert.Equal("SUCCEEDED", runs[0].GetProperty("status").GetString());
        }

        t.Clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(0, (await RunJobAsync(t)).GetProperty("due").GetInt32());

        t.Clock.Advance(TimeSpan.FromMinutes(31));
        Assert.Equal(3, (await RunJobAsync(t)).GetProperty("synced").GetInt32());
    }

    private static async Task<JsonElement> RunJobAsync(ConnectionApp t)
    {
        var run = await t.Admin.PostAsync($"/api/admin/jobs/{SyncAllConnections.Name}/run", null).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal("SUCCESS", run.GetProperty("run").GetProperty("status").GetString());
        return run.GetProperty("detail");
    }
}
