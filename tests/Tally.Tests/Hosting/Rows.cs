using System.Net;
using System.Net.Sockets;
using Microsoft.EntityFrameworkCore;
using Tally.Tests.Harness;

namespace Tally.Tests.Hosting;

/// <summary>How many rows every table a request could write holds: equal before and after means nothing was written.</summary>
internal static class Rows
{
    public static async Task<string> CountAsync(TallyApp app)
    {
        await using var db = app.Db();
        var ct = TestContext.Current.CancellationToken;
        return string.Join(", ",
            $"users {await db.Users.CountAsync(ct)}",
            $"links {await db.GuardianJuniors.CountAsync(ct)}",
            $"core accounts {await db.CoreAccounts.CountAsync(ct)}",
            $"store accounts {await db.StoreAccounts.CountAsync(ct)}",
            $"store orders {await db.StoreOrders.CountAsync(ct)}",
            $"ledger accounts {await db.LedgerAccounts.CountAsync(ct)}",
            $"transfers {await db.LedgerTransfers.CountAsync(ct)}",
            $"schedules {await db.AllowanceSchedules.CountAsync(ct)}",
            $"connections {await db.ProviderConnections.CountAsync(ct)}",
            $"job states {await db.JobStates.CountAsync(ct)}",
            $"cron runs {await db.CronRuns.CountAsync(ct)}",
            $"events {await db.OutboxEvents.CountAsync(ct)}");
    }
}

internal static class Ports
{
    /// <summary>A loopback port free right now, for an app on a real Kestrel server.</summary>
    public static int Free()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
