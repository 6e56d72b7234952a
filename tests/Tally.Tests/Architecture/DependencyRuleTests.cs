using NetArchTest.Rules;
using Tally.Data;

namespace Tally.Tests.Architecture;

/// <summary>
/// The dependencies the layout promises, checked on the compiled assembly (every type a type's
/// signatures and method bodies name): features use <c>Jobs/</c>, <c>Data/</c> and <c>Hosting/</c>;
/// <c>Jobs/</c> knows no feature; the ledger (which knows its owners, the users) and users know no caller; features stand side by side;
/// sandboxes are reached only by URL, so nothing in a feature names them and they name no feature.
/// A forbidden <c>using</c> turns one of these red, with the offending types in the message.
/// </summary>
public sealed class DependencyRuleTests
{
    private const string Features = "Tally.Features";
    private const string Jobs = "Tally.Jobs";
    private const string Hosting = "Tally.Hosting";
    private const string Dashboard = "Tally.Dashboard";
    private const string Sandbox = "Tally.Sandbox";
    private const string Demo = "Tally.Demo";

    /// <summary>The features that others may use: every feature pays through the ledger and belongs to users.</summary>
    private static readonly string[] Shared = ["Tally.Features.Ledger", "Tally.Features.Users"];

    private static readonly string[] SideBySide =
        ["Tally.Features.Allowances", "Tally.Features.BalanceSync", "Tally.Features.Connections", "Tally.Features.StoreIntegrity"];

    public static TheoryData<string, string[]> Rules()
    {
        var rules = new TheoryData<string, string[]>
        {
            { Jobs, [Features, Dashboard, Sandbox, Demo] },
            { Hosting, [Features, Dashboard, Sandbox, Demo] },
            { Sandbox, [Features, Dashboard, Demo, Jobs] },
            { Features, [Dashboard, Sandbox, Demo] },
            { "Tally.Features.Ledger", SideBySide },
            { "Tally.Features.Users", SideBySide.Append("Tally.Features.Ledger").ToArray() },
        };
        foreach (var feature in SideBySide)
        {
            rules.Add(feature, SideBySide.Where(other => other != feature).ToArray());
        }
        return rules;
    }

    [Theory]
    [MemberData(nameof(Rules))]
    public void Namespace_DependsOnNoneOfItsForbidden(string owner, string[] forbidden)
    {
        var result = Types.InAssembly(typeof(TallyDb).Assembly)
            .That().ResideInNamespace(owner)
            .ShouldNot().HaveDependencyOnAny(forbidden)
            .GetResult();
        Assert.True(result.IsSuccessful,
            $"{owner} must not depend on {string.Join(", ", forbidden)}; these do: {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    [Fact]
    public void Data_KnowsNoFeature_ExceptTheContextsOwnPartsThatFeaturesDeclare()
    {
        // TallyDb is one partial class: each feature adds its DbSets in its own folder, so the context
        // names every feature's entities. Everything else in Data/ (dialects, migrations, errors) must not.
        var result = Types.InAssembly(typeof(TallyDb).Assembly)
            .That().ResideInNamespace("Tally.Data").And().DoNotHaveName(nameof(TallyDb))
            .ShouldNot().HaveDependencyOnAny(Features, Jobs, Dashboard, Sandbox, Demo)
            .GetResult();
        Assert.True(result.IsSuccessful, $"Tally.Data depends on a feature or the runtime: {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    [Fact]
    public void TheRuleFinds_AForbiddenDependency()
    {
        // The check itself must be able to fail: the dashboard does use the features, so the same
        // rule pointed at it reports them.
        var result = Types.InAssembly(typeof(TallyDb).Assembly)
            .That().ResideInNamespace(Dashboard)
            .ShouldNot().HaveDependencyOnAny(Features)
            .GetResult();
        Assert.False(result.IsSuccessful);
        Assert.NotEmpty(result.FailingTypeNames);
    }
}
