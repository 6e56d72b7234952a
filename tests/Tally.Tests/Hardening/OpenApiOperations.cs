using System.Text.Json;

namespace Tally.Tests.Hardening;

/// <summary>
/// A JSON schema cut down to what the fuzzer needs: the kind of value (<c>object</c>, <c>array</c>,
/// <c>string</c>, <c>integer</c>, <c>number</c>, <c>boolean</c> or <c>any</c>), its format
/// (<c>uuid</c>, <c>int64</c>, ...), the component it was declared as, and its parts.
/// </summary>
public sealed record FieldSchema(string Kind, string? Format, string? Component, IReadOnlyList<FieldSchema.Property> Properties, FieldSchema? Items)
{
    public static readonly FieldSchema Any = new("any", null, null, [], null);

    public bool IsUuid => Format == "uuid";

    public sealed record Property(string Name, FieldSchema Schema);
}

public sealed record ApiParameter(string Name, string In, FieldSchema Schema);

/// <summary>One operation of the OpenAPI document: a method on a path template, its parameters and its JSON body.</summary>
public sealed record ApiOperation(string Method, string Path, IReadOnlyList<ApiParameter> Parameters, FieldSchema? Body)
{
    public override string ToString() => $"{Method} {Path}";
}

/// <summary>
/// Reads every operation of an OpenAPI 3 document (the app's own <c>/openapi/v1.json</c>), with
/// <c>$ref</c>, <c>oneOf</c> and nullable type lists resolved, so a new route is fuzzed without
/// anyone listing it.
/// </summary>
public static class OpenApiOperations
{
    private const int MaxDepth = 12;
    private static readonly string[] Methods = ["get", "put", "post", "delete", "patch"];
    private static readonly string[] Alternatives = ["oneOf", "anyOf", "allOf"];

    public static IReadOnlyList<ApiOperation> Read(JsonElement document)
    {
        var operations = new List<ApiOperation>();
        foreach (var path in document.GetProperty("paths").EnumerateObject())
        {
            var shared = path.Value.TryGetProperty("parameters", out var common) ? Parameters(common, document) : [];
            foreach (var method in Methods)
            {
                if (!path.Value.TryGetProperty(method, out var operation))
                {
                    continue;
                }
                var own = operation.TryGetProperty("parameters", out var p) ? Parameters(p, document) : [];
                operations.Add(new ApiOperation(method.ToUpperInvariant(), path.Name, [.. shared, .. own], Body(operation, document)));
            }
        }
        return operations;
    }

    private static List<ApiParameter> Parameters(JsonElement parameters, JsonElement root) =>
        parameters.EnumerateArray()
            .Select(p => p.TryGetProperty("$ref", out var r) ? Lookup(r.GetString()!, root) ?? p : p)
            .Where(p => p.TryGetProperty("name", out _) && p.TryGetProperty("in", out _))
            .Select(p => new ApiParameter(p.GetProperty("name").GetString()!, p.GetProperty("in").GetString()!,
                p.TryGetProperty("schema", out var schema) ? Resolve(schema, root, 0, null) : FieldSchema.Any))
            .ToList();

    private static FieldSchema? Body(JsonElement operation, JsonElement root)
    {
        if (!operation.TryGetProperty("requestBody", out var body) || !body.TryGetProperty("content", out var content))
        {
            return null;
        }
        // The JSON media type when there is one: that is what the app reads.
        var media = content.EnumerateObject().OrderBy(m => m.Name.Contains("json", StringComparison.OrdinalIgnoreCase) ? 0 : 1).ToList();
        return media.Count > 0 && media[0].Value.TryGetProperty("schema", out var schema) ? Resolve(schema, root, 0, null) : FieldSchema.Any;
    }

    /// <summary>Follows a local reference such as <c>#/components/schemas/CreateUser</c> from the document's root.</summary>
    private static JsonElement? Lookup(string reference, JsonElement root)
    {
        if (!reference.StartsWith("#/", StringComparison.Ordinal))
        {
            return null;
        }
        var at = root;
        foreach (var segment in reference[2..].Split('/'))
        {
            var name = segment.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (at.ValueKind != JsonValueKind.Object || !at.TryGetProperty(name, out at))
            {
                return null;
            }
        }
        return at;
    }

    private static FieldSchema Resolve(JsonElement schema, JsonElement root, int depth, string? component)
    {
        if (depth > MaxDepth || schema.ValueKind != JsonValueKind.Object)
        {
            return FieldSchema.Any;
        }
        if (schema.TryGetProperty("$ref", out var reference))
        {
            var name = reference.GetString()!.Split('/')[^1];
            return Lookup(reference.GetString()!, root) is { } target ? Resolve(target, root, depth + 1, name) : FieldSchema.Any;
        }
        foreach (var keyword in Alternatives)
        {
            if (schema.TryGetProperty(keyword, out var options) && options.ValueKind == JsonValueKind.Array)
            {
                // A nullable reference is written oneOf [null, $ref]: the fuzzer wants the non-null side (null is in every corpus anyway).
                var chosen = options.EnumerateArray().Where(o => !IsNullOnly(o)).ToList();
                return chosen.Count == 0 ? FieldSchema.Any : Resolve(chosen[0], root, depth + 1, component);
            }
        }
        var types = Types(schema);
        var format = schema.TryGetProperty("format", out var f) && f.ValueKind == JsonValueKind.String ? f.GetString() : null;
        if (types.Contains("object") || schema.TryGetProperty("properties", out _))
        {
            var properties = schema.TryGetProperty("properties", out var props)
                ? props.EnumerateObject().Select(p => new FieldSchema.Property(p.Name, Resolve(p.Value, root, depth + 1, null))).ToList()
                : [];
            return new FieldSchema("object", format, component, properties, null);
        }
        if (types.Contains("array"))
        {
            var items = schema.TryGetProperty("items", out var i) ? Resolve(i, root, depth + 1, null) : FieldSchema.Any;
            return new FieldSchema("array", format, component, [], items);
        }
        // ASP.NET Core declares numbers as ["integer", "string"] (a number may come quoted): the number is what it stands for.
        var kind = types.Contains("integer") ? "integer"
            : types.Contains("number") ? "number"
            : types.Contains("boolean") ? "boolean"
            : types.Contains("string") ? "string"
            : "any";
        return new FieldSchema(kind, format, component, [], null);
    }

    private static List<string> Types(JsonElement schema)
    {
        if (!schema.TryGetProperty("type", out var type))
        {
            return [];
        }
        var types = type.ValueKind == JsonValueKind.Array
            ? type.EnumerateArray().Select(t => t.GetString() ?? "").ToList()
            : [type.GetString() ?? ""];
        types.Remove("null");
        return types;
    }

    private static bool IsNullOnly(JsonElement schema) => Types(schema).Count == 0 && schema.TryGetProperty("type", out _);
}
