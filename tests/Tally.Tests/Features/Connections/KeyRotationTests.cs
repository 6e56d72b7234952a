using System.Net;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.EntityFrameworkCore;
using Tally.Features.Connections;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

public class KeyRotationTests
{
    [Theory]
    [InlineData("sqlite")]
    [InlineData("postgres")]
    public async Task KeyRotation_ConnectionsCreatedBefore_StillSync_AndMoveToTheNewKey(string storage)
    {
        await using var t = await ConnectionApp.CreateAsync(storage);
        var id = await t.User.CreateSandboxConnectionAsync(new { login = "rotating" });
        var idle = await t.User.CreateSandboxConnectionAsync(new { login = "idle" });
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var oldKey = await KeyOfAsync(t, id);

        var keys = t.App.Get<IKeyManager>();
        // Activated after the existing key (Data Protection keeps real time), so it becomes the default at once.
        var activation = DateTimeOffset.UtcNow.AddSeconds(1);
        var newKey = keys.CreateNewKey(activation, activation.AddDays(90));
        Assert.NotEqual(oldKey, newKey.KeyId);

        // Rotated: the connection still syncs, and once this instance has loaded the new key ring (Data
        // Protection refreshes it in the background), a sync moves the credentials to the new key.
        t.Clock.Advance(TimeSpan.FromMinutes(16));
        await t.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
        var protector = t.App.Get<CredentialProtector>();
        await Eventually.TrueAsync(async () => protector.TryUnprotect(await StoredAsync(t, id)) is { Stale: true } || await KeyOfAsync(t, id) == newKey.KeyId,
            "the new key ring is in use");
        await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        Assert.Equal(newKey.KeyId, await KeyOfAsync(t, id));

        // The old key revoked: the migrated connection syncs; one never synced since is unreadable and says so.
        keys.RevokeKey(oldKey, "rotated out");
        var idleCredentials = await StoredAsync(t, idle);
        await Eventually.TrueAsync(() => Task.FromResult(protector.TryUnprotect(idleCredentials) is null), "the revocation is in use");
        await t.User.SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
        await t.User.SyncAsync(idle).ExpectProblemAsync(HttpStatusCode.Conflict, "CREDENTIALS_UNREADABLE");

        await using var db = t.App.Db();
        Assert.True(await db.DataProtectionKeys.CountAsync(TestContext.Current.CancellationToken) >= 2);
    }

    /// <summary>The id of the Data Protection key a connection's credentials are encrypted with (payload bytes 4..20).</summary>
    private static async Task<Guid> KeyOfAsync(ConnectionApp t, Guid connectionId) =>
        new(Convert.FromBase64String(await StoredAsync(t, connectionId)).AsSpan(4, 16));

    private static async Task<string> StoredAsync(ConnectionApp t, Guid connectionId)
    {
        await using var db = t.App.Db();
        return (await db.ProviderConnections.Where(c => c.Id == connectionId).Select(c => c.CredentialsEncrypted).SingleAsync(TestContext.Current.CancellationToken))!;
    }
}
