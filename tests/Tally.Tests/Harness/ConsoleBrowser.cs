using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Tally.Dashboard;

namespace Tally.Tests.Harness;

/// <summary>
/// A headless Debian Chromium driven by Playwright against Tally on a real Kestrel port. Each
/// <see cref="SignInAsync"/> is a fresh browser context (its own cookies) opened by a one-time sign-in
/// link; every page's console errors and uncaught exceptions are collected for the test to assert on.
/// </summary>
public sealed class ConsoleBrowser : IAsyncDisposable
{
    private readonly IPlaywright _playwright;
    private readonly IBrowser _browser;

    private ConsoleBrowser(IPlaywright playwright, IBrowser browser, string baseUrl)
    {
        _playwright = playwright;
        _browser = browser;
        BaseUrl = baseUrl;
    }

    public string BaseUrl { get; }

    /// <summary>Console errors and page exceptions seen on any page, with the page's URL.</summary>
    public List<string> Errors { get; } = [];

    /// <summary>Starts Kestrel for <paramref name="app"/> on a free loopback port and a headless browser.</summary>
    public static async Task<ConsoleBrowser> StartAsync(TallyApp app)
    {
        var chromium = Servers.RequireChromium();
        app.UseKestrel(0);
        app.StartServer();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var playwright = await Playwright.CreateAsync();
        // Never a browser downloaded by Playwright: the system's Chromium, without its sandbox (tests run as root).
        var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = chromium,
            Headless = true,
            Args = ["--no-sandbox", "--disable-dev-shm-usage"],
        });
        return new ConsoleBrowser(playwright, browser, address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
    }

    /// <summary>A new browser context signed in with the given console roles, on the overview page.</summary>
    public async Task<IPage> SignInAsync(string name, params string[] roles)
    {
        var context = await _browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = BaseUrl, ViewportSize = new ViewportSize { Width = 1280, Height = 800 } });
        var page = await context.NewPageAsync();
        page.Console += (_, message) =>
        {
            if (message.Type == "error")
            {
                Errors.Add($"{page.Url}: {message.Text}");
            }
        };
        page.PageError += (_, error) => Errors.Add($"{page.Url}: {error}");
        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();
        var code = SignInCode.Create(TallyApp.SigningKey, Guid.NewGuid(), name, roles, SignIn.CodeLifetime, DateTimeOffset.UtcNow);
        await page.GotoAsync($"/dashboard/signin?code={code}");
        return page;
    }

    /// <summary>With <c>TALLY_SCREENSHOTS</c> set to a folder, saves the page there as NAME.png (the README's screenshots).</summary>
    public static async Task ScreenshotAsync(IPage page, string name)
    {
        if (Environment.GetEnvironmentVariable("TALLY_SCREENSHOTS") is { Length: > 0 } folder)
        {
            Directory.CreateDirectory(folder);
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(folder, $"{name}.png"), FullPage = true });
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
    }
}
