using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.EntityFrameworkCore;
using Tally.Tests.Harness;

namespace Tally.Tests.Features.Connections;

public class KeyRingCertificateTests
{
    [Fact]
    public async Task KeyRing_WithACertificate_IsEncryptedAtRest_AndOnlyAnInstanceWithTheCertificateReadsIt()
    {
        var folder = Directory.CreateTempSubdirectory("tally-keyring-");
        try
        {
            var pfx = Path.Combine(folder.FullName, "keyring.pfx");
            using (var rsa = RSA.Create(2048))
            {
                var request = new CertificateRequest("CN=tally-test-keyring", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
                using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
                await File.WriteAllBytesAsync(pfx, certificate.Export(X509ContentType.Pfx, "pfx-password"), TestContext.Current.CancellationToken);
            }
            var withCertificate = new Dictionary<string, string?>
            {
                ["DataProtection:CertificatePath"] = pfx,
                ["DataProtection:CertificatePassword"] = "pfx-password",
            };

            await using var first = await ConnectionApp.CreateAsync("sqlite", withCertificate);
            var id = await first.User.CreateSandboxConnectionAsync();
            await first.User.SyncAsync(id).ExpectAsync(HttpStatusCode.OK);
            await using (var db = first.App.Db())
            {
                var keys = await db.DataProtectionKeys.Select(k => k.Xml!).ToListAsync(TestContext.Current.CancellationToken);
                Assert.NotEmpty(keys);
                Assert.All(keys, xml =>
                {
                    Assert.Contains("EncryptedData", xml, StringComparison.Ordinal);
                    Assert.DoesNotContain("<value>", xml, StringComparison.Ordinal);
                });
            }

            // Another instance on the same database: with the certificate it reads the ring, without it it cannot.
            var sameDatabase = new Dictionary<string, string?>(withCertificate) { ["ConnectionStrings:Sqlite"] = first.App.ConnectionString };
            await using (var second = await ConnectionApp.CreateAsync("sqlite", sameDatabase))
            {
                await second.App.AsUser(first.UserId).SyncAsync(id, force: true).ExpectAsync(HttpStatusCode.OK);
            }
            await using var stranger = await ConnectionApp.CreateAsync("sqlite", new Dictionary<string, string?> { ["ConnectionStrings:Sqlite"] = first.App.ConnectionString });
            await stranger.App.AsUser(first.UserId).SyncAsync(id, force: true).ExpectProblemAsync(HttpStatusCode.Conflict, "CREDENTIALS_UNREADABLE");
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            folder.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task KeyRing_UnreadableCertificate_StopsStartUpNamingTheSetting()
    {
        await using var app = TallyApp.Sqlite(new Dictionary<string, string?> { ["DataProtection:CertificatePath"] = "/nonexistent/keyring.pfx" });
        var error = Assert.ThrowsAny<Exception>(() => app.Server);
        Assert.Contains("DataProtection:CertificatePath", error.ToString(), StringComparison.Ordinal);
        await Task.CompletedTask;
    }
}
