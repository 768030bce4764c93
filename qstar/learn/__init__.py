"""qstar.learn: train-time compute. One module per role:

- sft: supervised fine-tuning on reference chains (``fit`` is the loop the others reuse);
- reward_model: trains learned verifiers (ORM on outcomes, PRM on Monte-Carlo step labels); reward_eval measures them;
- grpo (+ rewards: verifiable RL rewards, losses: GRPO / Dr.GRPO / DAPO objectives, optim: Muon);
- expert_iteration, distill, retry (check-and-retry / backtracking data);
- evaluate: greedy accuracy and chain budgets every trainer and the lab share; runs: run directories (start, finish,
  resume; a finished run is refused unless --force); budget: update budgets with a time cap.
"""
