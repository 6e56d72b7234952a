using Microsoft.Extensions.Options;
using Tally.Hosting;
using Tally.Jobs.Queues;
using Tally.Jobs.Scheduling;

namespace Tally.Features.Allowances;

public static class AllowancesSetup
{
    public static WebApplicationBuilder AddAllowances(this WebApplicationBuilder builder)
    {
        builder.Services.AddValidatedOptions<AllowanceOptions>(AllowanceOptions.Section);
        builder.Services.AddSingleton<CreditBatcher>();
        builder.Services.AddSingleton<IDeadLetterReader, AllowanceDeadLetters>();
        builder.Services.AddQueueHandler<CreditAllowance>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<AllowanceOptions>>().Value;
            return new QueueDefinition(o.QueueName, o.MaxRetries, o.RetryDelay, o.Prefetch, o.Concurrency);
        });
        builder.Services.AddScheduledJob<EnqueueDueAllowances>(EnqueueDueAllowances.Name, "*/5 * * * *");
        return builder;
    }
}
