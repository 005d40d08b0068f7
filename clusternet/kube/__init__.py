"""clusternet.kube"""
