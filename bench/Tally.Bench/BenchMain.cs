namespace Tally.Bench;

/// <summary>
/// <c>dotnet run -c Release --project bench/Tally.Bench -- SUBCOMMAND [options]</c>. Each subcommand
/// measures one of Tally's performance targets (bench/README.md) against a reference measured in the same run.
/// </summary>
public static class BenchMain
{
    public static async Task<int> Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        switch (args)
        {
            case ["store", .. var rest]:
                return await StoreBench.RunAsync(rest, cancel.Token);
            case ["allowances", .. var rest]:
                return await AllowanceBench.RunAsync(rest, cancel.Token);
            case ["dead-letters", .. var rest]:
                return await DeadLetterBench.RunAsync(rest, cancel.Token);
            case ["console", .. var rest]:
                return await ConsoleBench.RunAsync(rest, cancel.Token);
            default:
                await Console.Error.WriteLineAsync("Usage: Tally.Bench store|allowances|dead-letters|console [options]  (see bench/README.md)");
                return 2;
        }
    }
}
