using Tally.Dashboard;
using Tally.Data;
using Tally.Demo;
using Tally.Features.Allowances;
using Tally.Features.BalanceSync;
using Tally.Features.Connections;
using Tally.Features.Ledger;
using Tally.Features.StoreIntegrity;
using Tally.Features.Users;
using Tally.Hosting;
using Tally.Jobs;
using Tally.Jobs.Audit;
using Tally.Jobs.Instances;
using Tally.Jobs.Scheduling;
using Tally.Sandbox;
using Tally.Sandbox.SimpleFin;

// `dotnet run --project src/Tally -- token --role admin` prints a development token and exits;
// `-- signin-link` a one-time console sign-in link.
if (args is ["token", ..])
{
    return DevToken.Print(args[1..]);
}
if (args is ["signin-link", ..])
{
    return SignInLink.Print(args[1..]);
}

var builder = WebApplication.CreateBuilder(args);
builder.AddConfigAliases()
    .AddTallyOptions()
    .AddTallyProblems()
    .AddHttpJson()
    .AddRequestLimits()
    .AddTallyAuth()
    .AddAdminApi()
    .AddTallyData()
    .AddJobRuntime()
    .AddInstances()
    .AddObservability()
    .AddTracing()
    .AddAllowances()
    .AddStoreIntegrity()
    .AddConnections()
    .AddBalanceSync()
    .AddSandbox()
    .AddSimpleFinSandbox()
    .AddDemoData()
    .AddDashboard();

var app = builder.Build();
app.UseTallyProblems();
app.UseStaticFiles();
app.UseRequestLimits();
app.UseRequestText();
app.UseAuthentication();
app.UseCookieAntiforgery();
app.UseAuthorization();
app.MapObservability();
app.MapSandbox();
if (app.Configuration.Read<TallyOptions>(TallyOptions.Section).IsApi)
{
    app.MapOperator()
        .MapJobDetails()
        .MapInstances()
        .MapOverview()
        .MapConsoleSearch()
        .MapUsers()
        .MapLedger()
        .MapAllowances()
        .MapStoreIntegrity()
        .MapConnections()
        .MapBalanceSync()
        .MapDashboard();
}
app.MapSimpleFinSandbox();
try
{
    app.Run();
}
catch (OperationCanceledException) when (app.Lifetime.ApplicationStopping.IsCancellationRequested)
{
    // Told to stop (SIGTERM) while still starting: a stop like any other, not a crash. Whatever had
    // started is let go with the process: deliveries not acknowledged return to their queue.
}
return 0;

/// <summary>Lets tests host the app with WebApplicationFactory.</summary>
public partial class Program;
