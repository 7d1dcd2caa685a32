/* sshd tests: see below */
