"""SMS: conversations over text messages, and the gateways that carry them.

- `gateway`: what a gateway is (`SmsGateway.send`), and `gateway_for(settings)`;
  `kannel` (Kannel's smsbox), `webhook` (a provider with a Twilio-style API) and the outbox
  gateway (texts stored and shown in the agent desktop, the default without a gateway).
- `outbox`: every text we send is queued in the store first and sent with retries and back-off.
- `channel`: `SmsChannel`, a flow's turns as texts (one message per turn, menus numbered).
- `service`: received texts: de-duplicated, opt-outs (STOP), and a number's open conversation
  continued or a new one started.
"""
