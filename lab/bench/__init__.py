"""python -m lab.bench: lab's speed measured side by side on whatever device is here. main.py holds the command
line, the tables and the targets; data.py the machine facts and the data path; training.py the training, host,
memory and concurrent-jobs sections."""
