namespace Tally.Tests.Harness;

public static class Errors
{
    /// <summary>Every message in an exception's chain, aggregates included, joined: what an operator would read.</summary>
    public static string AllMessages(Exception e) => string.Join(" | ", Flatten(e).Select(x => x.Message));

    private static IEnumerable<Exception> Flatten(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            yield return x;
            if (x is AggregateException agg)
            {
                foreach (var inner in agg.InnerExceptions.SelectMany(Flatten))
                {
                    yield return inner;
                }
            }
        }
    }
}
