using Tally.Hosting;

namespace Tally.Dashboard;

/// <summary>
/// <c>signin-link [--url http://localhost:5080] [--role admin] [--sub ID] [--name NAME]</c>: prints a
/// one-time console sign-in link, valid for ten minutes, signed with <c>Auth:SigningKey</c>.
/// </summary>
public static class SignInLink
{
    /// <summary>Who a sign-in link signs in when it names nobody: the developer at the console.</summary>
    public static readonly Guid Developer = new("d0d0d0d0-0000-4000-8000-000000000001");

    public static int Print(string[] args)
    {
        if (DevToken.SigningKey() is not { } key)
        {
            return 2;
        }
        var url = "http://localhost:5080";
        var sub = Developer;
        var name = "developer";
        var roles = new List<string>();
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--url":
                    url = args[i + 1].TrimEnd('/');
                    break;
                case "--sub" when Guid.TryParse(args[i + 1], out var id) && id != Guid.Empty:
                    sub = id;
                    break;
                case "--name":
                    name = args[i + 1];
                    break;
                case "--role" when args[i + 1] is Roles.Viewer or Roles.Operator or Roles.Admin:
                    roles.Add(args[i + 1]);
                    break;
                default:
                    Console.Error.WriteLine($"Unknown or invalid argument {args[i]} {args[i + 1]}.");
                    Console.Error.WriteLine("Usage: signin-link [--url URL] [--role viewer|operator|admin]... [--sub USER_ID] [--name NAME]");
                    return 2;
            }
        }
        if (roles.Count == 0)
        {
            roles.Add(Roles.Admin);
        }
        var code = SignInCode.Create(key, sub, name, roles, SignIn.CodeLifetime, DateTimeOffset.UtcNow);
        Console.WriteLine($"{url}/dashboard/signin?code={code}");
        return 0;
    }
}
