using System.Net.Http.Headers;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Tally.Data;
using Tally.Features.Connections.Providers;
using Tally.Hosting;

namespace Tally.Tests.Harness;

/// <summary>
/// One Tally instance hosted in the test process, on a real database: a fresh SQLite file by
/// default, or PostgreSQL. Settings are passed exactly as an operator would set them.
/// </summary>
public sealed class TallyApp : WebApplicationFactory<Program>
{
    public const string SigningKey = "tally-test-signing-key-0123456789abcdef";

    private readonly Dictionary<string, string?> _settings;
    private readonly string? _sqliteFolder;

    /// <summary>Extra registrations for a test (a test job or handler); applied after the app's own.</summary>
    public Action<IServiceCollection>? ConfigureTestServices { get; init; }

    private TallyApp(Dictionary<string, string?> settings, string? sqliteFolder, Action<IServiceCollection>? services = null)
    {
        ConfigureTestServices = services;
        _settings = settings;
        _sqliteFolder = sqliteFolder;
    }

    public string ConnectionString => _settings.GetValueOrDefault("ConnectionStrings:Postgres") ?? _settings["ConnectionStrings:Sqlite"]!;

    /// <summary>An instance on a new SQLite file, with the in-process queue and lock.</summary>
    public static TallyApp Sqlite(IDictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null)
    {
        var folder = Path.Combine(Path.GetTempPath(), "tally-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        var all = Defaults();
        all["ConnectionStrings:Sqlite"] = $"Data Source={Path.Combine(folder, "tally.db")}";
        Merge(all, settings);
        return new TallyApp(all, folder, services);
    }

    /// <summary>An instance on the given PostgreSQL database (see <see cref="Servers.NewPostgresDatabaseAsync"/>).</summary>
    public static TallyApp Postgres(string connectionString, IDictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null)
    {
        var all = Defaults();
        all["ConnectionStrings:Postgres"] = connectionString;
        Merge(all, settings);
        return new TallyApp(all, null, services);
    }

    /// <summary>
    /// A core nobody answers at (connections to it are refused at once). Outside Development an instance
    /// with the worker role must name its core; a test that syncs balances passes a SandboxHost's address.
    /// </summary>
    public const string NoCore = "http://127.0.0.1:9/no-core/";

    private static Dictionary<string, string?> Defaults() => new()
    {
        ["Auth:SigningKey"] = SigningKey,
        ["T24:BaseUrl"] = NoCore,
        ["Tally:DemoData"] = "false",
        ["Logging:LogLevel:Default"] = "Warning",
        ["Logging:LogLevel:Microsoft.EntityFrameworkCore"] = "None",
    };

    private static void Merge(Dictionary<string, string?> into, IDictionary<string, string?>? from)
    {
        foreach (var (k, v) in from ?? new Dictionary<string, string?>())
        {
            into[k] = v;
        }
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        foreach (var (key, value) in _settings)
        {
            builder.UseSetting(key, value);
        }
        // The `sandbox` provider fetches its accounts over HTTP from the sandbox bank. On the in-memory
        // test server (no socket) its requests go through the same in-memory pipeline as a test's own.
        builder.ConfigureServices(s => s.AddHttpClient(SandboxProvider.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(sp => sp.GetRequiredService<IServer>() is TestServer server ? server.CreateHandler() : new SocketsHttpHandler()));
        if (ConfigureTestServices is not null)
        {
            builder.ConfigureServices(ConfigureTestServices);
        }
    }

    /// <summary>Starts the host (migrations run) and answers a client with a bearer token for the given user and roles.</summary>
    public HttpClient Client(Guid? userId = null, params string[] roles)
    {
        var client = CreateClient();
        var token = Auth.CreateToken(SigningKey, userId ?? Guid.Empty, roles.Length == 0 ? [Roles.Admin] : roles, TimeSpan.FromHours(1));
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    public HttpClient Admin() => Client(null, Roles.Admin);

    /// <summary>A DbContext on the app's database, for arranging and asserting.</summary>
    public TallyDb Db()
    {
        _ = Services; // make sure the host (and its migrations) started, on the test server or Kestrel
        return Services.GetRequiredService<Microsoft.EntityFrameworkCore.IDbContextFactory<TallyDb>>().CreateDbContext();
    }

    public T Get<T>()
        where T : notnull
    {
        return Services.GetRequiredService<T>();
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (_sqliteFolder is not null)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            try
            {
                Directory.Delete(_sqliteFolder, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
