using System.Text;
using System.Text.Json.Nodes;

namespace Tally.Tests.Hardening;

/// <summary>Who sends a request: a name for the report and a client carrying that caller's token (or none).</summary>
public sealed record Caller(string Name, HttpClient Client);

/// <summary>One request of the fuzz: the operation, the caller, what was changed (a field, a parameter, the body) and to what.</summary>
public sealed record FuzzCase(ApiOperation Operation, Caller Caller, string Target, FuzzValue Value, Func<HttpRequestMessage> Build);

/// <summary>
/// Every request of the fuzz, derived from the OpenAPI document and the seeded world, nothing listed
/// per route. Per operation: the valid request from every caller; then, from the caller who may do
/// everything, each path parameter, each query parameter and each body field changed ONE at a time
/// from the valid request (so a failure names its field), whole-body attacks and wrong content
/// types. Finally one undocumented method per path. Requests are built when sent, so ids the client
/// supplies stay fresh.
/// </summary>
public sealed class FuzzPlan(FuzzWorld world, IReadOnlyList<ApiOperation> operations, IReadOnlyList<Caller> callers, Caller main)
{
    private const string JsonType = "application/json";
    private const int HugeBodyBytes = 3 * 1024 * 1024;

    /// <summary>
    /// Fields whose value must be new in every request to get past "already exists" into the insert:
    /// ids the client may supply and unique keys. A field being fuzzed gets the fuzz value instead.
    /// </summary>
    private static readonly HashSet<string> FreshFields = new(StringComparer.Ordinal) { "id", "username", "idempotencyKey", "accountNumber" };

    private static readonly string[] OtherMethods = ["PUT", "PATCH", "DELETE", "POST", "GET"];

    private static readonly (string Label, string? Type)[] ContentTypes =
    [
        ("valid body as text/plain", "text/plain"),
        ("valid body as application/xml", "application/xml"),
        ("valid body as a form", "application/x-www-form-urlencoded"),
        ("valid body as multipart", "multipart/form-data; boundary=x"),
        ("valid body without a Content-Type", null),
        ("valid body, charset=bogus", "application/json; charset=bogus"),
        ("valid UTF-8 body labelled charset=utf-16", "application/json; charset=utf-16"),
        ("valid body as merge-patch+json", "application/merge-patch+json"),
        ("valid body as */*", "*/*"),
    ];

    private static readonly string HugeText = new('a', HugeBodyBytes);
    private static readonly string DeepArrays = new string('[', FuzzCorpus.DeepNesting) + new string(']', FuzzCorpus.DeepNesting);
    private static readonly string DeepObjects = string.Concat(Enumerable.Repeat("{\"a\":", FuzzCorpus.DeepNesting)) + "1" + new string('}', FuzzCorpus.DeepNesting);

    private int _fresh;

    private sealed record Body(byte[]? Bytes, string? ContentType);

    /// <summary>A field of a body: where it is (property names and array indexes), its schema, and its valid value (null when absent).</summary>
    private sealed record Field(string Name, string Path, IReadOnlyList<object> Steps, FieldSchema Schema, JsonNode? Valid);

    public IEnumerable<FuzzCase> Cases()
    {
        // Deletes last: a real id deleted early would turn later cases into plain 404s.
        foreach (var operation in operations.Where(o => o.Method != "DELETE").Concat(operations.Where(o => o.Method == "DELETE")))
        {
            foreach (var c in CasesFor(operation))
            {
                yield return c;
            }
        }
        foreach (var path in operations.GroupBy(o => o.Path))
        {
            var documented = path.Select(o => o.Method).ToHashSet();
            if (OtherMethods.FirstOrDefault(m => !documented.Contains(m)) is { } method)
            {
                var operation = path.First() with { Method = method, Body = null };
                yield return Case(operation, main, "(method)", new FuzzValue(method, $"undocumented {method}"), RealPath(operation), [], () => null);
            }
        }
    }

    private IEnumerable<FuzzCase> CasesFor(ApiOperation operation)
    {
        var path = RealPath(operation);
        var example = operation.Body is null ? null : world.ExampleFor(operation, operations) ?? Generate(operation.Body, "")?.ToJsonString() ?? "null";
        Func<Body?> valid = example is null ? () => null : () => Json(Render(example, null, null));

        foreach (var caller in callers)
        {
            yield return Case(operation, caller, "(caller)", new FuzzValue(null, "the valid request"), path, [], valid);
        }

        foreach (var parameter in operation.Parameters.Where(p => p.In == "path"))
        {
            // No NUL in a path: Kestrel answers 400 before the app sees it, and the in-memory test server throws instead.
            foreach (var value in FuzzCorpus.ForParameter(parameter.Name, world.RealValuesFor(parameter.Name, operation.Path)).Where(v => !v.Raw!.Contains('\0', StringComparison.Ordinal)))
            {
                var changed = new Dictionary<string, string>(path) { [parameter.Name] = value.Raw! };
                yield return Case(operation, main, $"path {parameter.Name}", value, changed, [], valid);
            }
        }

        foreach (var parameter in operation.Parameters.Where(p => p.In == "query"))
        {
            var real = parameter.Schema.IsUuid ? world.AllIds : [];
            foreach (var value in FuzzCorpus.ForParameter(parameter.Name, real))
            {
                yield return Case(operation, main, $"query {parameter.Name}", value, path, [(parameter.Name, value.Raw)], valid);
            }
            yield return Case(operation, main, $"query {parameter.Name}", new FuzzValue(null, "given twice (1 and 2)"), path, [(parameter.Name, "1"), (parameter.Name, "2")], valid);
            yield return Case(operation, main, $"query {parameter.Name}", new FuzzValue(null, "name without '='"), path, [(parameter.Name, null)], valid);
        }

        if (example is null)
        {
            foreach (var (label, body) in BodiesWhereNoneIsExpected())
            {
                yield return Case(operation, main, "(unexpected body)", new FuzzValue(null, label), path, [], () => body);
            }
            yield break;
        }

        var root = JsonNode.Parse(example);
        foreach (var field in Fields(operation.Body!, root, [], ""))
        {
            foreach (var value in FuzzCorpus.ForJson(field.Name, field.Schema, field.Valid, world.AllIds))
            {
                yield return Case(operation, main, $"body {field.Path}", value, path, [], () => Json(Render(example, field.Steps, value.Raw)));
            }
        }
        foreach (var (label, body) in WholeBodies(example, root))
        {
            yield return Case(operation, main, "(whole body)", new FuzzValue(null, label), path, [], () => body);
        }
        foreach (var (label, type) in ContentTypes)
        {
            yield return Case(operation, main, "(content type)", new FuzzValue(type, label), path, [], () => new Body(Encoding.UTF8.GetBytes(Render(example, null, null)), type));
        }
    }

    private Dictionary<string, string> RealPath(ApiOperation operation) =>
        operation.Parameters.Where(p => p.In == "path").ToDictionary(p => p.Name,
            p => world.ValueFor(p.Name, operation.Path, p.Schema.IsUuid) ?? (p.Schema.IsUuid ? Guid.NewGuid().ToString() : "fuzz"));

    private static FuzzCase Case(ApiOperation operation, Caller caller, string target, FuzzValue value,
        IReadOnlyDictionary<string, string> path, IReadOnlyList<(string Name, string? Value)> query, Func<Body?> body) =>
        new(operation, caller, target, value, () => Request(operation, path, query, body()));

    private static HttpRequestMessage Request(ApiOperation operation, IReadOnlyDictionary<string, string> path, IReadOnlyList<(string Name, string? Value)> query, Body? body)
    {
        var url = new StringBuilder(path.Aggregate(operation.Path, (u, p) => u.Replace("{" + p.Key + "}", Uri.EscapeDataString(p.Value), StringComparison.Ordinal)));
        for (var i = 0; i < query.Count; i++)
        {
            url.Append(i == 0 ? '?' : '&').Append(Uri.EscapeDataString(query[i].Name));
            if (query[i].Value is { } value)
            {
                url.Append('=').Append(Uri.EscapeDataString(value));
            }
        }
        var request = new HttpRequestMessage(new HttpMethod(operation.Method), url.ToString());
        if (body is { Bytes: { } bytes })
        {
            request.Content = new ByteArrayContent(bytes);
            if (body.ContentType is { } type)
            {
                request.Content.Headers.TryAddWithoutValidation("Content-Type", type);
            }
        }
        return request;
    }

    private static Body Json(string text) => new(Encoding.UTF8.GetBytes(text), JsonType);

    /// <summary>Every field of a body, depth first: the schema's properties and those of the example (an "any" field's own parts too).</summary>
    private static IEnumerable<Field> Fields(FieldSchema schema, JsonNode? node, IReadOnlyList<object> steps, string path)
    {
        if (node is JsonObject || (node is null && steps.Count == 0 && schema.Kind == "object"))
        {
            var present = node is JsonObject o ? o.Select(kv => kv.Key) : [];
            foreach (var name in schema.Properties.Select(p => p.Name).Concat(present).Distinct(StringComparer.Ordinal))
            {
                var child = node is JsonObject obj && obj.TryGetPropertyValue(name, out var c) ? c : null;
                var childSchema = schema.Properties.FirstOrDefault(p => p.Name == name)?.Schema ?? FieldSchema.Any;
                IReadOnlyList<object> childSteps = [.. steps, name];
                var childPath = path.Length == 0 ? name : $"{path}.{name}";
                yield return new Field(name, childPath, childSteps, childSchema, child);
                foreach (var nested in Fields(childSchema, child, childSteps, childPath))
                {
                    yield return nested;
                }
            }
        }
        else if (node is JsonArray { Count: > 0 } array)
        {
            var itemSchema = schema.Items ?? FieldSchema.Any;
            IReadOnlyList<object> itemSteps = [.. steps, 0];
            var name = steps.Count > 0 && steps[^1] is string parent ? parent : "item";
            yield return new Field(name, $"{path}[0]", itemSteps, itemSchema, array[0]);
            foreach (var nested in Fields(itemSchema, array[0], itemSteps, $"{path}[0]"))
            {
                yield return nested;
            }
        }
    }

    /// <summary>
    /// The example with fresh ids and keys, and the field at <paramref name="target"/> replaced by the
    /// raw JSON <paramref name="replacement"/> (left out when null). Written by hand: the raw value may
    /// be JSON no parser would hold (10,000 levels deep, a lone surrogate, 1e400).
    /// </summary>
    private string Render(string example, IReadOnlyList<object>? target, string? replacement)
    {
        var node = JsonNode.Parse(example);
        Freshen(node);
        var json = new StringBuilder();
        Write(json, node, target, 0, replacement);
        return json.ToString();
    }

    private void Freshen(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (name, child) in obj.ToList())
                {
                    if (FreshFields.Contains(name) && child is JsonValue value && value.TryGetValue<string>(out var text))
                    {
                        obj[name] = Guid.TryParse(text, out _) ? Guid.NewGuid().ToString() : $"{text}-{Interlocked.Increment(ref _fresh)}";
                    }
                    else
                    {
                        Freshen(child);
                    }
                }
                break;
            case JsonArray array:
                foreach (var item in array)
                {
                    Freshen(item);
                }
                break;
        }
    }

    private static void Write(StringBuilder json, JsonNode? node, IReadOnlyList<object>? target, int depth, string? replacement)
    {
        var here = target is not null && depth < target.Count ? target[depth] : null;
        var last = target is not null && depth == target.Count - 1;
        switch (node)
        {
            case JsonObject obj:
                json.Append('{');
                var first = true;
                foreach (var (name, child) in obj)
                {
                    var onPath = here is string key && key == name;
                    if (onPath && last && replacement is null)
                    {
                        continue;
                    }
                    json.Append(first ? "" : ",").Append(FuzzCorpus.Quote(name)).Append(':');
                    first = false;
                    if (onPath && last)
                    {
                        json.Append(replacement);
                    }
                    else
                    {
                        Write(json, child, onPath ? target : null, depth + 1, replacement);
                    }
                }
                if (last && here is string missing && !obj.ContainsKey(missing) && replacement is not null)
                {
                    json.Append(first ? "" : ",").Append(FuzzCorpus.Quote(missing)).Append(':').Append(replacement);
                }
                json.Append('}');
                break;
            case JsonArray array:
                json.Append('[');
                for (var i = 0; i < array.Count; i++)
                {
                    var onPath = here is int index && index == i;
                    if (onPath && last && replacement is null)
                    {
                        continue;
                    }
                    json.Append(json[^1] == '[' ? "" : ",");
                    if (onPath && last)
                    {
                        json.Append(replacement);
                    }
                    else
                    {
                        Write(json, array[i], onPath ? target : null, depth + 1, replacement);
                    }
                }
                json.Append(']');
                break;
            default:
                json.Append(node?.ToJsonString() ?? "null");
                break;
        }
    }

    /// <summary>A valid body for an operation the world never called: built from its schema, with real ids where a field names one.</summary>
    private JsonNode? Generate(FieldSchema schema, string name) => schema.Kind switch
    {
        "object" => new JsonObject(schema.Properties.Select(p => KeyValuePair.Create(p.Name, Generate(p.Schema, p.Name)))),
        "array" => new JsonArray(Generate(schema.Items ?? FieldSchema.Any, name)),
        "string" => JsonValue.Create(world.ValueFor(name, "", schema.IsUuid) ?? (schema.IsUuid ? Guid.NewGuid().ToString() : "fuzz")),
        "integer" => JsonValue.Create(1),
        "number" => JsonValue.Create(1.5m),
        "boolean" => JsonValue.Create(true),
        _ => null,
    };

    /// <summary>Attacks on the body as a whole: emptiness, the wrong container, broken syntax, depth, size, encodings.</summary>
    private IEnumerable<(string Label, Body? Body)> WholeBodies(string example, JsonNode? root)
    {
        var valid = Render(example, null, null);
        var isArray = root is JsonArray;
        yield return ("no body at all", null);
        yield return ("empty body", Json(""));
        yield return ("null", Json("null"));
        yield return (isArray ? "{} instead of an array" : "[] instead of an object", Json(isArray ? "{}" : "[]"));
        yield return ("truncated", Json(valid[..(valid.Length / 2)]));
        yield return ("not JSON", Json("garbage"));
        yield return ("a string", Json("\"text\""));
        yield return ("a number", Json("123"));
        yield return (isArray ? "the first item alone" : "the body inside an array", Json(isArray ? (root as JsonArray)![0]?.ToJsonString() ?? "null" : $"[{valid}]"));
        yield return ("10,000 nested arrays", Json(DeepArrays));
        yield return ("10,000 nested objects", Json(DeepObjects));
        yield return ("the body twice", Json(valid + valid));
        yield return ("a comment and a trailing comma", Json("/* c */" + valid[..^1] + (isArray ? ",]" : ",}")));
        yield return ("UTF-8 byte order mark", new Body([0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(valid)], JsonType));
        yield return ("UTF-16 body, charset=utf-16", new Body(Encoding.Unicode.GetBytes(valid), "application/json; charset=utf-16"));
        if (isArray)
        {
            var item = Render((root as JsonArray)![0]?.ToJsonString() ?? "null", null, null);
            var copies = Math.Max(1, HugeBodyBytes / (item.Length + 1));
            yield return ($"3 MB: {copies:N0} items", Json("[" + string.Join(',', Enumerable.Repeat(item, copies)) + "]"));
        }
        // An object body, or the object inside an array body: the same attacks on its fields.
        var objectJson = isArray ? Render((root as JsonArray)![0]?.ToJsonString() ?? "null", null, null) : valid;
        if (objectJson.StartsWith('{') && objectJson.Length > 2)
        {
            string Wrap(string o) => isArray ? $"[{o}]" : o;
            var open = objectJson[..^1];
            var firstKey = JsonNode.Parse(objectJson)!.AsObject().First().Key;
            yield return ("a duplicate key", Json(Wrap($"{open},{FuzzCorpus.Quote(firstKey)}:null}}")));
            yield return ("an unknown extra field", Json(Wrap($"{open},\"unexpected\":{{\"x\":[1,2,3]}}}}")));
            if (!isArray)
            {
                yield return ("3 MB: one padded field", Json($"{open},\"padding\":\"{HugeText}\"}}"));
            }
            var bytes = new List<byte>(Encoding.UTF8.GetBytes(Wrap($"{open},\"x\":\"\u0001")));
            var at = bytes.LastIndexOf(0x01);
            bytes.RemoveAt(at);
            bytes.InsertRange(at, [0xFF, 0xFE, 0xC0, 0x80, 0xED, 0xA0, 0x80]);
            bytes.InsertRange(at + 7, Encoding.UTF8.GetBytes("\"}"));
            yield return ("invalid UTF-8 bytes in a string", new Body([.. bytes], JsonType));
        }
    }

    private static IEnumerable<(string Label, Body Body)> BodiesWhereNoneIsExpected()
    {
        yield return ("a JSON body", Json("{\"x\":1}"));
        yield return ("a 3 MB body", Json($"{{\"padding\":\"{HugeText}\"}}"));
        yield return ("text that is not JSON", new Body(Encoding.UTF8.GetBytes("garbage"), "text/plain"));
        yield return ("10,000 nested arrays", Json(DeepArrays));
    }
}
