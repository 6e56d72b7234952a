using Microsoft.AspNetCore.Http.HttpResults;

namespace Tally.Dashboard;

/// <summary>
/// How a console page reads what an admin endpoint answered: the page models call the endpoints'
/// own methods (never a query of their own), so a page shows exactly what the API answers, and a
/// refusal (a bad filter, an unknown id) as the API words it.
/// </summary>
public static class PageAnswer
{
    /// <summary>The value of an <c>Ok</c> answer, or null with <paramref name="error"/> set to the problem's words.</summary>
    public static T? Read<T>(IResult answer, out string? error)
        where T : class
    {
        error = null;
        switch (answer)
        {
            case Ok<T> ok:
                return ok.Value;
            case ValidationProblem invalid:
                error = string.Join(" ", invalid.ProblemDetails.Errors.Select(e => $"{e.Key} {string.Join(", ", e.Value)}."));
                return null;
            case ProblemHttpResult problem:
                error = problem.ProblemDetails.Detail ?? problem.ProblemDetails.Title;
                return null;
            default:
                throw new InvalidOperationException($"A console page cannot show a {answer.GetType().Name} answer.");
        }
    }

    /// <summary>A filter box left empty means no filter.</summary>
    public static string? Blank(string? text) => string.IsNullOrWhiteSpace(text) ? null : text.Trim();
}
