"""flows/retrain"""
