using System.ComponentModel.DataAnnotations;
using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc.Infrastructure;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace Tally.Hosting;

/// <summary>One problem code an endpoint may answer, with its HTTP status: declared with <see cref="ApiReference.Refuses{TBuilder}"/>.</summary>
public sealed record ProblemCode(int Status, string Code, string Meaning);

/// <summary>
/// What makes <c>/docs</c> a reference rather than a list of routes. Each operation's summary and
/// description come from the handler's XML comment (<c>&lt;summary&gt;</c>, <c>&lt;remarks&gt;</c>);
/// this adds, to every description, who may call it (from the endpoint's authorization, so it cannot
/// drift from what is enforced) and the problems it answers: the generic ones every endpoint of its
/// kind can answer, and the codes it declares with <see cref="Refuses{TBuilder}"/>. A parameter or
/// property marked <see cref="AllowedValuesAttribute"/> lists its values as an enumeration.
/// </summary>
public static class ApiReference
{
    /// <summary>Declares a problem code the endpoint answers, shown in <c>/docs</c> under its status.</summary>
    public static TBuilder Refuses<TBuilder>(this TBuilder builder, int status, string code, string meaning)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new ProblemCode(status, code, meaning));

    public static void Configure(OpenApiOptions options)
    {
        options.AddOperationTransformer((operation, context, _) =>
        {
            var metadata = context.Description.ActionDescriptor.EndpointMetadata;
            var text = new StringBuilder(operation.Description ?? "");
            if (text.Length > 0)
            {
                text.Append("\n\n");
            }
            text.Append("**Roles:** ").Append(WhoMayCall(metadata)).Append("\n\n**Problems** (RFC 9457, `code` names the case):");
            foreach (var (status, code, meaning) in Problems(metadata, context.Description.ParameterDescriptions.Count > 0))
            {
                text.Append("\n- ").Append(status).Append(' ').Append(code is null ? "" : $"`{code}`: ").Append(meaning);
            }
            operation.Description = text.ToString();
            foreach (var parameter in operation.Parameters ?? [])
            {
                var described = context.Description.ParameterDescriptions.FirstOrDefault(p => string.Equals(p.Name, parameter.Name, StringComparison.OrdinalIgnoreCase));
                var info = (described?.ParameterDescriptor as IParameterInfoParameterDescriptor)?.ParameterInfo;
                if (info?.GetCustomAttribute<AllowedValuesAttribute>() is { } allowed && parameter is OpenApiParameter { Schema: OpenApiSchema schema })
                {
                    schema.Enum = allowed.Values.Select(v => (JsonNode)JsonValue.Create(v?.ToString())!).ToList();
                }
            }
            return Task.CompletedTask;
        });
        options.AddSchemaTransformer((schema, context, _) =>
        {
            if (context.JsonPropertyInfo?.AttributeProvider?.GetCustomAttributes(typeof(AllowedValuesAttribute), true) is [AllowedValuesAttribute allowed, ..])
            {
                schema.Enum = allowed.Values.Select(v => (JsonNode)JsonValue.Create(v?.ToString())!).ToList();
            }
            return Task.CompletedTask;
        });
    }

    /// <summary>The roles that pass every policy the endpoint requires (they nest: admin ⊃ operator ⊃ viewer).</summary>
    public static string WhoMayCall(IList<object> metadata)
    {
        if (metadata.OfType<IAllowAnonymous>().Any())
        {
            return "anyone (no token needed)";
        }
        var policies = metadata.OfType<IAuthorizeData>().Select(a => a.Policy).OfType<string>().ToHashSet(StringComparer.Ordinal);
        return policies.Contains(Roles.Admin) ? "`admin`"
            : policies.Contains(Roles.Operator) ? "`operator` or `admin`"
            : policies.Contains(Roles.Viewer) ? "`viewer`, `operator` or `admin`"
            : policies.Contains(Roles.Guardian) ? "`guardian` (the token's subject is the guardian)"
            : policies.Contains(Roles.User) ? "`user` or `guardian` (the token's subject is the user)"
            : "any signed-in caller";
    }

    private static IEnumerable<(int Status, string? Code, string Meaning)> Problems(IList<object> metadata, bool hasInput)
    {
        if (hasInput)
        {
            yield return (400, "VALIDATION_FAILED", "a parameter or field is wrong; `errors` names each one and why");
        }
        if (!metadata.OfType<IAllowAnonymous>().Any())
        {
            yield return (401, null, "no token or session, or an invalid one");
            yield return (403, null, "the caller's roles do not include one listed above");
        }
        foreach (var declared in metadata.OfType<ProblemCode>().OrderBy(p => p.Status).ThenBy(p => p.Code, StringComparer.Ordinal))
        {
            yield return (declared.Status, declared.Code, declared.Meaning);
        }
    }
}
