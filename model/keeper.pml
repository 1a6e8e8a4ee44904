/*
 * keeper's protocol as a Promela model for the SPIN model checker: every interleaving of a
 * small cluster, not a sample of schedules. docs/model.md says what each part stands for in
 * the code, what is abstracted away, and how to run it (npm run model).
 *
 * Time is discrete (ticks of real time). A node's clock is known only to run within the drift
 * bound, so every interval a node measures on its own clock lasts a number of real ticks in
 * a range: a period lasts PMIN..PMAX ticks. Which length each period really has is the
 * checker's choice, period by period.
 *
 * Variants (spin -D...): each breaks one rule of the protocol, and the claim it guards must
 * fail with a counterexample.
 *   SWEEP_READS_NODE_FIRST   orphansOf reads the node item before listing its tasks
 *   FENCE_FROM_REPLY         the lease runs from the heartbeat's reply, not its send
 *   LOOSE_BOUND              K one period lower than the safety condition allows
 *   CODE_BOUND               the fence window at the edge of config.ts's condition, which
 *                            leaves out the heartbeat's own latency
 *   MOVE_WITHOUT_TOKEN       a move's condition checks owner and incarnation, not the token
 *   DECLARE_WITHOUT_COUNTER  a declaration checks incarnation and state, not the counter
 *   OWN_COUNTER_IGNORED      the observer's own counter is not evidence, only its peers' are
 *
 * Faults (at most FAULTS in a run) of every kind, unless left out: NO_CRASH, NO_FREEZE,
 * NO_LEAVE, NO_RELEASE, NO_LOST (heartbeat writes and replies), NO_TXLOSS (transactions).
 */

#ifndef NODES
#define NODES 2
#endif
/* Two tasks: enough for a transaction of two, and for one task in the pool. */
#define TASKS 2
/* Crashes, freezes, lost writes and replies, leaves, releases: at most this many in a run. */
#ifndef FAULTS
#define FAULTS 2
#endif

/* ---------------------------------------------------------------- time, in ticks */

#define PMIN 2          /* a period lasts PMIN..PMAX ticks of real time */
#define PMAX 3
#define D 1             /* a write's reply comes within D ticks of its send (request timeout) */
#define DLAND 1         /* and the write itself lands within DLAND ticks of its send */
/*
 * The lease lasts FMAX ticks after the send it runs from: the longest a fence window can
 * last on a slow clock (a faster clock fences sooner, which only stops work sooner).
 * FMAX > PMAX + D, so that a node whose beats land never fences.
 *
 * The safety condition: FMAX + DLAND + PMIN <= (K - 1) * PMIN. A witness's K increments
 * after the value landed span K - 1 of its periods, less the latency of the first (sent up
 * to DLAND before it landed), less one period for a witness that rejoins (the join and its
 * first beat move its counter twice within D).
 */
#ifdef CODE_BOUND
#define FMAX 8          /* FMAX <= (K-1)*PMIN: the condition as config.ts states it */
#else
#define FMAX 5
#endif
#ifdef LOOSE_BOUND
#define K 4             /* one period too few */
#else
#define K 5             /* staleTicks */
#endif

#define NONE 255
#define FREE NODES      /* owner of a task in the pool */

/* node item states */
#define ALIVE 0
#define DEAD 1
#define LEFT 2

/* a node process's phase */
#define RUNNING 0
#define LEAVING 1
#define GONE 2

/* a heartbeat write's fate, chosen at its send */
#define LAND 1
#define LOST 2

/* ---------------------------------------------------------------- the table */

byte st[NODES];         /* node item: state */
byte inc[NODES];        /* node item: incarnation */
byte own[TASKS];        /* task item: owner (FREE: the pool) */
byte oinc[TASKS];       /* task item: owner's incarnation */
byte tok[TASKS];        /* task item: fencing token */

/*
 * The counters themselves are not kept: they only grow, so a compare-and-set on an observed
 * counter succeeds exactly when the counter has not changed since it was read. What the
 * detector needs of them is the evidence: ev[p*NODES+w] is how many times w's counter moved
 * since p's counter last changed (saturating at K). Counting from the moment p's value
 * landed, not from an observer's first sighting of it, gives every observer the most
 * evidence any real sighting (its own, a snapshot, a published record) could give.
 */
byte ev[NODES * NODES];

/* ---------------------------------------------------------------- the nodes */

byte phase[NODES];
bit crashed[NODES];
bit frozen[NODES];      /* SIGSTOP, a long GC pause: no step, while real time goes on */
byte myInc[NODES];      /* the incarnation the process runs as */
byte held[NODES * TASKS]; /* Holdings: the token a node adopted a task with; 0: not held */

/* Heartbeat and Lease */
byte pt[NODES];         /* ticks since the last beat was sent (saturating at PMAX) */
byte hbAge[NODES];      /* 0: no beat in flight; else 1 + ticks since its send */
byte hbFate[NODES];
bit hbLanded[NODES];
bit hbOk[NODES];        /* the landed write's condition held */
bit valLanded[NODES];   /* the value now being written (counter + 1) is in the table already */
byte fa[NODES];         /* ticks since the first attempt of that value was sent; NONE: none yet */
byte ls[NODES];         /* ticks since the send time the lease runs from (saturating at FMAX) */
bit fenced[NODES];
bit passDue[NODES];
bit inPass[NODES];      /* a maintenance pass (or a leave) is under way */

/* Monitor: one suspect per pass, with whether its item changed since it was read */
byte susp[NODES];
byte suspInc[NODES];
bit suspMoved[NODES];

/* A transaction whose reply was lost and that has not landed yet: it may land later, whole. */
bit txOn[NODES];
byte txFrom[NODES];
byte txTo[NODES];
byte txToInc[NODES];
byte txInc[NODES * TASKS];
byte txTok[NODES * TASKS]; /* 0: task not in the transaction */

byte faults;

/* ghosts, for the claims */
bit tokenRegressed;     /* a write gave a task a token not above the one it had */
bit declaredMoved;      /* a declaration landed on a node whose counter moved since it was read */

#define UP(i) (!crashed[i] && !frozen[i])
#define HEALTHY(i) (UP(i) && phase[i] == RUNNING)
#define H(i, t) held[(i) * TASKS + (t)]

/* The runner's own view: it holds the task and believes its lease valid. */
#define RUNS(i, t) (!crashed[i] && H(i, t) != 0 && !fenced[i])

/* Detector.staleness: the strongest evidence of any witness (with fewer than three, the code's case too). */
#ifdef OWN_COUNTER_IGNORED
#define WITNESS(p, w, o) ((w) != (o) && ev[(p) * NODES + (w)] >= K)
#else
#define WITNESS(p, w, o) (ev[(p) * NODES + (w)] >= K)
#endif

#if NODES == 2
#define RUNNERS(t) (RUNS(0, t) + RUNS(1, t))
#define EVIDENT(p, o) (WITNESS(p, 0, o) || WITNESS(p, 1, o))
#define OTHER_HEALTHY(j) (HEALTHY(1 - (j)))
#elif NODES == 3
#define RUNNERS(t) (RUNS(0, t) + RUNS(1, t) + RUNS(2, t))
#define EVIDENT(p, o) (WITNESS(p, 0, o) || WITNESS(p, 1, o) || WITNESS(p, 2, o))
#define OTHER_HEALTHY(j) (((j) != 0 && HEALTHY(0)) || ((j) != 1 && HEALTHY(1)) || ((j) != 2 && HEALTHY(2)))
#else
#error "the model is written for 2 or 3 nodes"
#endif

/* A task no live incarnation owns: in the pool, or with a crashed, dead, departed or replaced one. */
#define ORPHAN(t) (own[t] == FREE || crashed[own[t]] || st[own[t]] != ALIVE || inc[own[t]] != oinc[t])

#define TWO_RUNNERS (RUNNERS(0) > 1 || RUNNERS(1) > 1)
#define ORPHANS_OWNED (([] (ORPHAN(0) -> <> !ORPHAN(0))) && ([] (ORPHAN(1) -> <> !ORPHAN(1))))

/* Never two nodes running one task, each in its own view. */
ltl one_runner { [] !TWO_RUNNERS }
/* Every write to a task raises its fencing token. */
ltl tokens_grow { [] !tokenRegressed }
/* A declaration never lands on a node whose heartbeat landed after the value observed. */
ltl declare_on_observed { [] !declaredMoved }
/* While a node lives, a task without a live owner is owned again (weak fairness). */
ltl orphans_owned { ORPHANS_OWNED }

/* ---------------------------------------------------------------- store writes */

/* Store.moveTask / moveTasks: the compare-and-set on owner, incarnation and token. */
#ifdef MOVE_WITHOUT_TOKEN
#define MATCH(t, o, oi, tk) (own[t] == (o) && oinc[t] == (oi))
#else
#define MATCH(t, o, oi, tk) (own[t] == (o) && oinc[t] == (oi) && tok[t] == (tk))
#endif

inline applyMove(t, to, toInc, fromTok) {
  if
  :: fromTok + 1 <= tok[t] -> tokenRegressed = 1
  :: else
  fi;
  own[t] = to;
  oinc[t] = toInc;
  tok[t] = fromTok + 1;
  printf("task %d -> owner %d inc %d token %d\n", t, own[t], oinc[t], tok[t])
}

/* p's counter (or incarnation) changed in the table. */
inline counterMoved(p, w) {
  w = 0;
  do
  :: w < NODES ->
     ev[(p) * NODES + w] = 0;
     if
     :: w != p && ev[w * NODES + (p)] < K -> ev[w * NODES + (p)]++
     :: else
     fi;
     if
     :: susp[w] == p -> suspMoved[w] = 1
     :: else
     fi;
     w++
  :: else -> w = 0; break
  od
}

/* ---------------------------------------------------------------- Heartbeat (lib/node/heartbeat.ts) */

/* Lease.renew: from the send time of the value's first attempt. */
inline renew(i) {
  valLanded[i] = 0;
#ifdef FENCE_FROM_REPLY
  ls[i] = 0;
#else
  if
  :: fa[i] < ls[i] -> ls[i] = fa[i]
  :: else
  fi;
#endif
  fa[i] = NONE;
  if
  :: ls[i] < FMAX -> fenced[i] = 0
  :: else           /* 'late': the reply came after the lease had run out */
  fi
}

/* Worker.rejoin + Join.join: stop every task at once, write incarnation + 1, beat at once. */
inline rejoin(i, t) {
  t = 0;
  do
  :: t < TASKS -> H(i, t) = 0; t++
  :: else -> t = 0; break
  od;
  inc[i] = inc[i] + 1;
  st[i] = ALIVE;
  myInc[i] = inc[i];
  printf("node %d: heartbeat refused; stops every task, rejoins as inc %d\n", i, inc[i]);
  counterMoved(i, t);
  valLanded[i] = 0;
  fa[i] = NONE;
  ls[i] = 0;            /* the lease runs from the join write's send */
  fenced[i] = 0;
  pt[i] = PMAX;         /* Heartbeat.start: beat at once */
  susp[i] = NONE;
  suspInc[i] = 0;
  suspMoved[i] = 0
}

proctype Heartbeat(byte i) {
  byte w;
end_idle:
  do
  :: atomic {
       UP(i) && phase[i] != GONE && hbAge[i] == 0 && pt[i] >= PMIN ->
       pt[i] = 0;
       hbAge[i] = 1;
       if
       :: fa[i] == NONE -> fa[i] = 0
       :: else
       fi;
       if
       :: hbFate[i] = LAND; printf("node %d: beat sent\n", i)
#ifndef NO_LOST
       :: faults < FAULTS -> faults++; hbFate[i] = LOST; printf("node %d: beat sent, will be lost\n", i)
#endif
       fi
     };
     do
     /* DynamoStore.heartbeat: SET counter, condition inc = :myInc AND state = 'alive' */
     :: atomic {
          hbFate[i] == LAND && !hbLanded[i] && hbAge[i] <= DLAND + 1 ->
          hbLanded[i] = 1;
          if
          :: st[i] == ALIVE && inc[i] == myInc[i] ->
             printf("node %d: beat lands\n", i);
             hbOk[i] = 1;
             if
             :: !valLanded[i] -> valLanded[i] = 1; counterMoved(i, w)
             :: else
             fi
          :: else -> hbOk[i] = 0
          fi
        }
     /* the reply, or the request timing out */
     :: atomic {
          UP(i) && (hbLanded[i] || hbFate[i] == LOST) ->
          if
          :: hbLanded[i] && !hbOk[i] ->
             if
             :: phase[i] == RUNNING -> rejoin(i, w)
             :: else
             fi
          :: hbLanded[i] && hbOk[i] -> renew(i); printf("node %d: reply; lease runs %d ticks old\n", i, ls[i])
#ifndef NO_LOST
          :: hbLanded[i] && hbOk[i] && faults < FAULTS -> faults++; printf("node %d: reply lost\n", i) /* retry the same value */
#endif
          :: !hbLanded[i] -> skip
          fi;
          hbAge[i] = 0;
          hbLanded[i] = 0;
          hbOk[i] = 0;
          hbFate[i] = 0;
          if
          :: phase[i] == RUNNING -> passDue[i] = 1
          :: else
          fi;
          break
        }
     od
  od
}

/* ---------------------------------------------------------------- a node's maintenance pass */

/* A node that may receive tasks, as the mover reads it (Mover.candidates). */
#define CANDIDATE(r, i, x) ((r) != (x) && (((r) == (i) && phase[i] == RUNNING) || ((r) != (i) && st[r] == ALIVE)))

#define LISTED(t) (lstTok[t] != 0)

/*
 * Mover.orphansOf(x): the tasks held under x by an incarnation that is gone. Listed first,
 * then x's item is read: an item read second is at least as new as every listed owner.
 */
inline listTasks(x) {
  t = 0;
  do
  :: t < TASKS ->
     if
     :: own[t] == x -> lstTok[t] = tok[t]; lstInc[t] = oinc[t]
     :: else -> lstTok[t] = 0; lstInc[t] = 0
     fi;
     t++
  :: else -> t = 0; break
  od
}

inline readItem(x) {
  if
  :: st[x] == ALIVE -> liveInc = inc[x]
  :: else -> liveInc = NONE
  fi
}

inline dropLive() {
  t = 0;
  do
  :: t < TASKS ->
     if
     :: LISTED(t) && lstInc[t] == liveInc -> lstTok[t] = 0; lstInc[t] = 0
     :: else
     fi;
     t++
  :: else -> t = 0; liveInc = 0; break
  od
}

inline orphansOf(x) {
#ifdef SWEEP_READS_NODE_FIRST
  atomic { UP(i) -> readItem(x); printf("node %d reads node %d's item (live inc %d)\n", i, x, liveInc) };
  atomic { UP(i) -> listTasks(x); printf("node %d lists node %d's tasks\n", i, x); dropLive() }
#else
  atomic { UP(i) -> listTasks(x); printf("node %d lists node %d's tasks\n", i, x) };      /* Store.tasksOwnedBy */
  atomic { UP(i) -> readItem(x); printf("node %d reads node %d's item (live inc %d)\n", i, x, liveInc); dropLive() } /* Store.getNode */
#endif
}

/*
 * Mover.distribute: read the candidates, move the tasks to one of them (a transaction for
 * two or more, all or none), and task by task whatever the transaction did not move.
 */
inline distribute(x) {
  atomic {
    UP(i) ->
    n = 0;
    t = 0;
    do
    :: t < TASKS -> if :: LISTED(t) -> n++ :: else fi; t++
    :: else -> t = 0; break
    od;
    if
    :: n > 0 && CANDIDATE(0, i, x) -> r = 0
    :: n > 0 && CANDIDATE(1, i, x) -> r = 1
#if NODES == 3
    :: n > 0 && CANDIDATE(2, i, x) -> r = 2
#endif
    :: else -> r = NONE
    fi;
    if
    :: r == i -> rInc = myInc[i]
    :: r != i && r != NONE -> rInc = inc[r]
    :: else -> rInc = 0
    fi
  };
  if
  :: r != NONE && n >= 2 ->
     /* Store.moveTasks */
     atomic {
       UP(i) ->
       landed = 0;
       unknown = 0;
       if
       :: MATCH(0, x, lstInc[0], lstTok[0]) && MATCH(1, x, lstInc[1], lstTok[1]) ->
          applyMove(0, r, rInc, lstTok[0]);
          applyMove(1, r, rInc, lstTok[1]);
          landed = 1;
          if
          :: skip
#ifndef NO_TXLOSS
          :: faults < FAULTS -> faults++; landed = 0; unknown = 1; printf("node %d: transaction landed, reply lost\n", i)
#endif
          fi
       :: else        /* refused: nothing applied */
       fi;
       if
#ifndef NO_TXLOSS
       :: !landed && !unknown && !txOn[i] && faults < FAULTS ->
          /* its reply lost before it landed: it may land later, whole, or never */
          faults++;
          unknown = 1;
          txOn[i] = 1;
          printf("node %d: transaction reply lost before it landed\n", i);
          txFrom[i] = x;
          txTo[i] = r;
          txToInc[i] = rInc;
          t = 0;
          do
          :: t < TASKS -> txInc[i * TASKS + t] = lstInc[t]; txTok[i * TASKS + t] = lstTok[t]; t++
          :: else -> t = 0; break
          od
#endif
       :: else
       fi
     };
     if
     :: unknown ->
        /* Store.getTasks: did it land after all? */
        atomic {
          UP(i) ->
          landed = (own[0] == r && oinc[0] == rInc && tok[0] == lstTok[0] + 1 &&
                    own[1] == r && oinc[1] == rInc && tok[1] == lstTok[1] + 1);
          unknown = 0
        }
     :: else
     fi;
     if
     :: landed -> landed = 0; lstTok[0] = 0; lstTok[1] = 0; lstInc[0] = 0; lstInc[1] = 0
     :: else
     fi
  :: else
  fi;
  /* Moves.move, one by one: what is left */
  t = 0;
  do
  :: t < TASKS && (r == NONE || !LISTED(t)) -> lstTok[t] = 0; lstInc[t] = 0; t++
  :: t < TASKS && r != NONE && LISTED(t) ->
     atomic {
       UP(i) ->
       if
       :: MATCH(t, x, lstInc[t], lstTok[t]) -> applyMove(t, r, rInc, lstTok[t])
       :: else
       fi;
       lstTok[t] = 0;
       lstInc[t] = 0;
       t++
     }
  :: t >= TASKS -> t = 0; n = 0; r = 0; rInc = 0; break
  od
}

proctype Node(byte i) {
  byte x, r, rInc, liveInc, t, n, w;
  byte lstTok[TASKS];   /* the token of each listed task; 0: not listed */
  byte lstInc[TASKS];
  bit won, landed, unknown;

end_idle:
  do
  :: atomic { HEALTHY(i) && passDue[i] -> passDue[i] = 0; inPass[i] = 1 };

     /* Monitor.observe: read the watched peers; Detector.suspects */
     atomic {
       UP(i) ->
       if
       :: phase[i] == RUNNING && 0 != i && st[0] == ALIVE && EVIDENT(0, i) -> susp[i] = 0
       :: phase[i] == RUNNING && 1 != i && st[1] == ALIVE && EVIDENT(1, i) -> susp[i] = 1
#if NODES == 3
       :: phase[i] == RUNNING && 2 != i && st[2] == ALIVE && EVIDENT(2, i) -> susp[i] = 2
#endif
       :: else -> susp[i] = NONE
       fi;
       if
       :: susp[i] != NONE -> suspInc[i] = inc[susp[i]]; suspMoved[i] = 0; printf("node %d reads node %d: stale\n", i, susp[i])
       :: else
       fi
     };

     /* Monitor.declareStale: the compare-and-set on the observed incarnation and counter */
     atomic {
       UP(i) ->
       won = 0;
       x = susp[i];
       if
       :: x != NONE && phase[i] == RUNNING && !fenced[i] ->
#ifdef DECLARE_WITHOUT_COUNTER
          if
          :: st[x] == ALIVE && inc[x] == suspInc[i] ->
#else
          if
          :: st[x] == ALIVE && inc[x] == suspInc[i] && !suspMoved[i] ->
#endif
             declaredMoved = declaredMoved || suspMoved[i];
             st[x] = DEAD;
             printf("node %d declares node %d dead\n", i, x);
             won = 1
          :: else
          fi
       :: else
       fi;
       susp[i] = NONE;
       suspInc[i] = 0;
       suspMoved[i] = 0
     };
     if
     :: won -> won = 0; orphansOf(x); distribute(x)   /* Mover.takeOver */
     :: else
     fi;
     x = 0;

     /*
      * Handover.catchUp (reconcile): adopt what the table says is this incarnation's, reclaim
      * tasks of earlier incarnations of this node, drop what is no longer its own.
      */
     atomic {
       UP(i) ->
       t = 0;
       do
       :: t < TASKS ->
          if
          :: phase[i] == RUNNING && own[t] == i && oinc[t] == myInc[i] ->
             if                                      /* Holdings.adopt */
             :: H(i, t) != tok[t] -> H(i, t) = tok[t]; printf("node %d runs task %d (token %d)\n", i, t, tok[t])
             :: else
             fi
          :: phase[i] == RUNNING && own[t] == i && oinc[t] < myInc[i] ->
             applyMove(t, i, myInc[i], tok[t]);      /* reclaim, Moves.move */
             H(i, t) = tok[t];
             printf("node %d runs task %d (token %d)\n", i, t, tok[t])
          :: else -> H(i, t) = 0                     /* Holdings.drop */
          fi;
          t++
       :: else -> t = 0; break
       od
     };

     /* Pool.claimUnowned: list free tasks, then claim each by compare-and-set */
     atomic {
       UP(i) ->
       t = 0;
       do
       :: t < TASKS ->
          if
          :: own[t] == FREE -> lstTok[t] = tok[t]; lstInc[t] = oinc[t]
          :: else -> lstTok[t] = 0
          fi;
          t++
       :: else -> t = 0; break
       od
     };
     do
     :: t < TASKS && !LISTED(t) -> t++
     :: t < TASKS && LISTED(t) ->
        atomic {
          UP(i) ->
          if
          :: phase[i] == RUNNING && !fenced[i] && MATCH(t, FREE, lstInc[t], lstTok[t]) ->
             applyMove(t, i, myInc[i], lstTok[t]);
             H(i, t) = tok[t];
             printf("node %d runs task %d (token %d)\n", i, t, tok[t])
          :: else
          fi;
          lstTok[t] = 0;
          lstInc[t] = 0;
          t++
        }
     :: t >= TASKS -> t = 0; break
     od;

     /* Sweeper.sweep: hand out what is still registered to dead or departed nodes */
     x = 0;
     do
     :: x < NODES && (x == i || st[x] == ALIVE) -> x++
     :: x < NODES && x != i && st[x] != ALIVE ->
        orphansOf(x);
        distribute(x);
        x++
     :: x >= NODES -> x = 0; break
     od;
     inPass[i] = 0

  /* Worker.stop + Mover.leave: stop every task, hand them out, mark the item left */
  :: atomic {
       UP(i) && phase[i] == LEAVING ->
       inPass[i] = 1;
       t = 0;
       do
       :: t < TASKS -> H(i, t) = 0; t++
       :: else -> t = 0; break
       od
     };
     atomic {
       UP(i) ->
       t = 0;
       do
       :: t < TASKS ->
          if
          :: own[t] == i && oinc[t] == myInc[i] -> lstTok[t] = tok[t]; lstInc[t] = oinc[t]
          :: else -> lstTok[t] = 0
          fi;
          t++
       :: else -> t = 0; break
       od
     };
     distribute(i);
     atomic {
       UP(i) ->
       if
       :: st[i] == ALIVE && inc[i] == myInc[i] -> st[i] = LEFT; printf("node %d left\n", i)   /* Store.markLeft */
       :: else
       fi;
       phase[i] = GONE;
       inPass[i] = 0
     }
  od
}

/* ---------------------------------------------------------------- the world around the nodes */

/* A node whose next step cannot wait: time stands still until it is taken. */
#define URGENT(i) ( \
  (UP(i) && (inPass[i] || (passDue[i] && phase[i] == RUNNING) || phase[i] == LEAVING)) || \
  (UP(i) && phase[i] != GONE && hbAge[i] == 0 && pt[i] >= PMAX) || \
  (hbFate[i] == LAND && !hbLanded[i] && hbAge[i] > DLAND) || \
  (UP(i) && hbAge[i] > D && (hbLanded[i] || hbFate[i] == LOST)))

#if NODES == 2
#define ANY_URGENT (URGENT(0) || URGENT(1))
#else
#define ANY_URGENT (URGENT(0) || URGENT(1) || URGENT(2))
#endif

/* A transaction that lost its reply lands now, if every task is still as it expected. */
inline txLand(j) {
  printf("node %d's lost transaction arrives\n", j);
  if
  :: (txTok[j * TASKS] == 0 || MATCH(0, txFrom[j], txInc[j * TASKS], txTok[j * TASKS])) &&
     (txTok[j * TASKS + 1] == 0 || MATCH(1, txFrom[j], txInc[j * TASKS + 1], txTok[j * TASKS + 1])) ->
     if
     :: txTok[j * TASKS] != 0 -> applyMove(0, txTo[j], txToInc[j], txTok[j * TASKS])
     :: else
     fi;
     if
     :: txTok[j * TASKS + 1] != 0 -> applyMove(1, txTo[j], txToInc[j], txTok[j * TASKS + 1])
     :: else
     fi
  :: else
  fi;
  txClear(j)
}

inline txClear(j) {
  txOn[j] = 0;
  txFrom[j] = 0;
  txTo[j] = 0;
  txToInc[j] = 0;
  txInc[j * TASKS] = 0;
  txTok[j * TASKS] = 0;
  txInc[j * TASKS + 1] = 0;
  txTok[j * TASKS + 1] = 0
}

/* Each fault is a step that changes something: a step that does nothing would let time stand still forever. */
#define MAY_FAIL(j) (faults < FAULTS && HEALTHY(j) && OTHER_HEALTHY(j))
#ifndef NO_CRASH
#define CRASH_AT(j) :: atomic { MAY_FAIL(j) -> faults++; crashed[j] = 1; phase[j] = GONE; printf("node %d crashes\n", j) }
#else
#define CRASH_AT(j)
#endif
#ifndef NO_FREEZE
#define FREEZE_AT(j) :: atomic { MAY_FAIL(j) -> faults++; frozen[j] = 1; printf("node %d freezes\n", j) }
#else
#define FREEZE_AT(j)
#endif
#ifndef NO_LEAVE
#define LEAVE_AT(j) :: atomic { MAY_FAIL(j) -> faults++; phase[j] = LEAVING; printf("node %d leaves\n", j) }
#else
#define LEAVE_AT(j)
#endif
/* Holdings.release (an operator's release, a type without a handler here): back to the pool */
#ifndef NO_RELEASE
#define RELEASABLE(j, t) (H(j, t) != 0 && own[t] == j && oinc[t] == myInc[j] && tok[t] == H(j, t))
#define RELEASE_AT(j, t) :: atomic { faults < FAULTS && HEALTHY(j) && RELEASABLE(j, t) -> \
     faults++; H(j, t) = 0; printf("node %d releases task %d\n", j, t); applyMove(t, FREE, 0, tok[t]) }
#else
#define RELEASE_AT(j, t)
#endif
#define FAULTS_AT(j) CRASH_AT(j) FREEZE_AT(j) LEAVE_AT(j) RELEASE_AT(j, 0) RELEASE_AT(j, 1)

proctype World() {
  byte j;
end_idle:
  do
  /* one tick of real time, when no node has a step that cannot wait */
  :: d_step {
       !ANY_URGENT ->
       printf("tick\n");
       j = 0;
       do
       :: j < NODES ->
          if :: pt[j] < PMAX -> pt[j]++ :: else fi;
          if :: hbAge[j] > 0 && hbAge[j] <= D -> hbAge[j]++ :: else fi;
          if :: fa[j] != NONE && fa[j] < FMAX -> fa[j]++ :: else fi;
          if :: ls[j] < FMAX -> ls[j]++ :: else fi;
          if                                                  /* Lease.check: expired */
          :: ls[j] >= FMAX && !fenced[j] && phase[j] != GONE -> fenced[j] = 1; printf("node %d: lease expired, fenced\n", j)
          :: ls[j] >= FMAX -> fenced[j] = 1
          :: else
          fi;
          j++
       :: else -> j = 0; break
       od
     }
  /* faults, each while another node runs healthy */
  FAULTS_AT(0)
  FAULTS_AT(1)
#if NODES == 3
  FAULTS_AT(2)
#endif
  :: atomic { frozen[0] -> frozen[0] = 0; printf("node 0 thaws\n") }
  :: atomic { frozen[1] -> frozen[1] = 0; printf("node 1 thaws\n") }
#if NODES == 3
  :: atomic { frozen[2] -> frozen[2] = 0; printf("node 2 thaws\n") }
#endif
  /* a transaction whose reply was lost lands late, or never */
  :: atomic { txOn[0] -> txLand(0) }
  :: atomic { txOn[0] -> txClear(0) }
  :: atomic { txOn[1] -> txLand(1) }
  :: atomic { txOn[1] -> txClear(1) }
#if NODES == 3
  :: atomic { txOn[2] -> txLand(2) }
  :: atomic { txOn[2] -> txClear(2) }
#endif
  od
}

init {
  byte i;
  atomic {
    i = 0;
    do
    :: i < NODES ->
       inc[i] = 1;
       myInc[i] = 1;
       fa[i] = NONE;
       susp[i] = NONE;
       i++
    :: else -> break
    od;
    /* task 0 runs on node 0; task 1 waits in the pool */
    own[0] = 0; oinc[0] = 1; tok[0] = 1; H(0, 0) = 1;
    own[1] = FREE; oinc[1] = 0; tok[1] = 1;
    i = 0;
    do
    :: i < NODES -> run Heartbeat(i); run Node(i); i++
    :: else -> break
    od;
    run World()
  }
}
