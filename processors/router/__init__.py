"""The order router: order commands from Kafka to signed venue REST calls, outcomes back to Kafka.

- ``settings``: accounts (credentials by reference, limits), venues' trading endpoints.
- ``credentials``: secrets read from the environment or secret files, turned into venue clients.
- ``checks``: the pre-trade rules; a failed rule is a rejected event naming it.
- ``market``: what the checks read: instrument rules, best bid/offer, kill switches.
- ``orders``: the state of every order and the events that tell what happened to it.
- ``router``: the loop: consume, check, call the venue, answer; transactions tie the answers,
  the order state and the command offsets together.
"""
