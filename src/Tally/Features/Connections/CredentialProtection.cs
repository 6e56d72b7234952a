using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Tally.Data;
using Tally.Features.Connections.Providers;

namespace Tally.Data
{
    /// <summary>The Data Protection key ring lives in the database, so every instance shares it.</summary>
    public sealed partial class TallyDb : IDataProtectionKeyContext
    {
        public DbSet<DataProtectionKey> DataProtectionKeys => Set<DataProtectionKey>();
    }
}

namespace Tally.Features.Connections
{
    internal sealed class DataProtectionKeyMap : IEntityTypeConfiguration<DataProtectionKey>
    {
        public void Configure(EntityTypeBuilder<DataProtectionKey> e) => e.ToTable("data_protection_keys");
    }

    /// <summary>
    /// Encrypts connection credentials at rest with ASP.NET Core Data Protection (AES-256-CBC with
    /// HMACSHA256 by default), keys in <c>data_protection_keys</c>. Keys rotate by themselves every 90
    /// days (or by <c>IKeyManager</c>); old keys stay in the ring, so a rotation leaves every stored
    /// credential readable, and a credential read with a key that is no longer the default is
    /// re-encrypted with the current one on its next successful sync (once this instance has loaded
    /// the new ring, which Data Protection refreshes in the background). A revoked key no longer decrypts:
    /// a connection still on it answers CREDENTIALS_UNREADABLE and must be reconnected.
    /// </summary>
    public sealed class CredentialProtector
    {
        public const string Purpose = "Tally.Connections.Credentials.v1";

        private readonly IDataProtector _protector;

        public CredentialProtector(IDataProtectionProvider provider) => _protector = provider.CreateProtector(Purpose);

        public string Protect(ProviderSecret secret) =>
            Convert.ToBase64String(_protector.Protect(Encoding.UTF8.GetBytes(secret.Reveal())));

        /// <summary>The secret, and whether it should be stored again under the current key; null when it cannot be read.</summary>
        public (ProviderSecret Secret, bool Stale)? TryUnprotect(string stored)
        {
            try
            {
                var bytes = Convert.FromBase64String(stored);
                if (_protector is IPersistedDataProtector persisted)
                {
                    var plain = persisted.DangerousUnprotect(bytes, ignoreRevocationErrors: false, out var requiresMigration, out _);
                    return (new ProviderSecret(Encoding.UTF8.GetString(plain)), requiresMigration);
                }
                return (new ProviderSecret(Encoding.UTF8.GetString(_protector.Unprotect(bytes))), false);
            }
            catch (Exception e) when (e is CryptographicException or FormatException)
            {
                return null;
            }
        }

        public static IServiceCollection AddCredentialProtection(IServiceCollection services, IConfiguration configuration)
        {
            var dataProtection = services.AddDataProtection()
                .SetApplicationName("Tally")
                .PersistKeysToDbContext<TallyDb>();
            if (KeyRingOptions.Certificate(configuration) is { } certificate)
            {
                dataProtection.ProtectKeysWithCertificate(certificate);
            }
            services.AddSingleton<CredentialProtector>();
            return services;
        }
    }

    /// <summary>
    /// The <c>DataProtection</c> section: how the key ring itself is kept. With a certificate, every
    /// key in <c>data_protection_keys</c> is encrypted with it (XML encryption), so a copy of the
    /// database alone does not give the credentials away. Without one (embedded mode), the keys are
    /// stored as Data Protection writes them, and it says so in a warning when it creates one.
    /// </summary>
    public sealed class KeyRingOptions
    {
        public const string Section = "DataProtection";

        /// <summary>A PKCS #12 (.pfx) file with the certificate and its private key.</summary>
        public string? CertificatePath { get; set; }

        public string? CertificatePassword { get; set; }

        internal static X509Certificate2? Certificate(IConfiguration configuration)
        {
            var options = configuration.GetSection(Section).Get<KeyRingOptions>();
            if (string.IsNullOrWhiteSpace(options?.CertificatePath))
            {
                return null;
            }
            X509Certificate2 certificate;
            try
            {
                certificate = X509CertificateLoader.LoadPkcs12FromFile(options.CertificatePath, options.CertificatePassword);
            }
            catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
            {
                throw new InvalidOperationException($"DataProtection:CertificatePath cannot be read as a PKCS #12 certificate with DataProtection:CertificatePassword ({e.GetType().Name}).", e);
            }
            return certificate.HasPrivateKey
                ? certificate
                : throw new InvalidOperationException("DataProtection:CertificatePath must hold the certificate's private key.");
        }
    }
}
