namespace Tally.Hosting;

/// <summary>
/// <c>token [--sub USER_ID] [--role admin] [--role guardian] [--hours 12]</c>: prints an HS256 token
/// signed with <c>Auth:SigningKey</c> from the same configuration the service reads. The console's
/// sign-in link is <see cref="Dashboard.SignInLink"/>.
/// </summary>
public static class DevToken
{
    /// <summary><c>Auth:SigningKey</c> from the configuration the service reads, or null (said on stderr) when unset or short.</summary>
    internal static string? SigningKey()
    {
        var configuration = new ConfigurationBuilder()
            .SetBasePath(AppContext.BaseDirectory)
            .AddJsonFile("appsettings.json", optional: true)
            .AddJsonFile($"appsettings.{Environment.GetEnvironmentVariable("ASPNETCORE_ENVIRONMENT") ?? "Development"}.json", optional: true)
            .AddEnvironmentVariables()
            .Build();
        var key = configuration["Auth:SigningKey"];
        if (string.IsNullOrWhiteSpace(key) || key.Length < 32)
        {
            Console.Error.WriteLine("Auth:SigningKey is not set (at least 32 characters); set Auth__SigningKey.");
            return null;
        }
        return key;
    }

    public static int Print(string[] args)
    {
        if (SigningKey() is not { } key)
        {
            return 2;
        }
        var subject = Guid.Empty;
        var roles = new List<string>();
        var hours = 12.0;
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--sub" when Guid.TryParse(args[i + 1], out var id):
                    subject = id;
                    break;
                case "--role":
                    roles.Add(args[i + 1]);
                    break;
                case "--hours" when double.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out var h):
                    hours = h;
                    break;
                default:
                    Console.Error.WriteLine($"Unknown or invalid argument {args[i]} {args[i + 1]}.");
                    Console.Error.WriteLine("Usage: token [--sub USER_ID] [--role admin|guardian|user]... [--hours N]");
                    return 2;
            }
        }
        if (roles.Count == 0)
        {
            roles.Add(Roles.Admin);
        }
        if (subject == Guid.Empty && roles.Any(r => r is Roles.User or Roles.Guardian))
        {
            // Tally refuses such a token on every user endpoint; say so now rather than with a 403 later.
            Console.Error.WriteLine("A user or guardian token needs --sub <user id> (a UUID other than the all-zero one).");
            return 2;
        }
        Console.WriteLine(Auth.CreateToken(key, subject, roles, TimeSpan.FromHours(hours)));
        return 0;
    }
}
