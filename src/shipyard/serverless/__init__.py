"""AWS Lambda handlers: ``shipyard.serverless.http:handler`` (the HTTP API through Mangum) and
``shipyard.serverless.sqs:handler`` (tasks from an SQS event source). Each builds its services
once per execution environment (the cold start) and keeps them across invocations."""
