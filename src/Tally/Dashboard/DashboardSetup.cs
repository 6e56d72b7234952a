using Tally.Hosting;

namespace Tally.Dashboard;

/// <summary>
/// The operator console at <c>/dashboard</c>: Razor Pages rendered on the server (no state of its own:
/// any api instance serves any page), behind the viewer role. Its buttons call the admin API with the
/// session cookie and the antiforgery token, so the console can do nothing the API cannot.
/// </summary>
public static class DashboardSetup
{
    public static WebApplicationBuilder AddDashboard(this WebApplicationBuilder builder)
    {
        builder.Services.AddRazorPages(o =>
        {
            o.RootDirectory = "/Dashboard/Pages";
            o.Conventions.AuthorizeFolder("/", Roles.Viewer);
        });
        return builder;
    }

    public static WebApplication MapDashboard(this WebApplication app)
    {
        app.MapSignIn();
        app.MapRazorPages();
        return app;
    }
}
