"""The local transport: producer and consumer processes on one host, built to survive ``kill -9``.

What it requires (and :mod:`pcq.core.transport` states for every transport):

* every item known up front: item ids are the integers ``0 .. N-1`` of the
  run's :class:`~pcq.core.local.plan.Plan`, and each one indexes the run's
  shared memory; the supervisor rebuilds the body of an item it must put back
  (a dead consumer's, a crashed producer's) from the plan;
* one host: the wire is a pair of UNIX sockets and the state is shared memory,
  both inherited by child processes of one parent.

One item's trip, and the module that owns each step::

    parent (run.py: run_local)   Plan, SharedState, Channel built once; children
      |                          started by the Launcher, each handed the Channel
      v
    producer process             LocalProducer.put(batch) / LocalRunProducer.put(run)
      (producer.py)                SharedState.produced_at[i] = stamp
      |                            RunSender: pickle a run of consecutive ids,
      |                            [queue-size slot], channel.tx.send;
      |                            SharedState.put[producer] += n
      v
    items socket pair            SOCK_SEQPACKET: one atomic send/recv per message,
      (channel.py)                 no lock anywhere; a full buffer is backpressure
      v
    consumer process             LocalConsumer.get: channel.rx.recv_into,
      (consumer.py)                SharedState.held[slot] = first, count, deliveries,
      |                            [release the queue-size slot], build the Items
      |                          handler(item), then
      |                            ack / ack_many: SharedState.done[i] = serial + 1,
      |                              the last one clears held[slot]
      |                            nack / release: an event on the events pair
      v
    supervisor, in the parent    Supervisor (supervisor.py) through its
      (supervisor.py,              SupervisorPort (channel.py):
       channel.py)                 events: "retry"/"requeue" -> re-send,
                                     "dead" -> done[i] = -1, a dead letter
                                   dead consumer: held[slot] -> re-send what is
                                     not done, repay its queue slot, replace it
                                   crashed producer: put the rest of its range
                                   every done[i] set: one SENTINEL per consumer

Modules: :mod:`~pcq.core.local.channel` (the wire, shared by all roles, and
the supervisor's port), :mod:`~pcq.core.local.shared_state` (the shared
memory), :mod:`~pcq.core.local.producer`, :mod:`~pcq.core.local.consumer`,
:mod:`~pcq.core.local.supervisor` (the parent's loop), :mod:`~pcq.core.local.run`
(``pcq local``: its settings, the children's mains, the launcher),
:mod:`~pcq.core.local.items` (fast Item builders, ``ItemRun``),
:mod:`~pcq.core.local.plan`, :mod:`~pcq.core.local.result`,
:mod:`~pcq.core.local.children` (signals around child start-up).
"""
