"""The stream mode: Kinesis ``ride_events`` -> predictions on ``ride_predictions``.

Two runners share one :class:`~deploy_modes.stream.service.StreamService`: the AWS Lambda
handler (:mod:`deploy_modes.stream.lambda_function`) and a long-running consumer over every
shard with durable checkpoints (:mod:`deploy_modes.stream.consumer`).
"""
